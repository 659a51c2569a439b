"""The report page's pool sizing panel in headless Chromium against the real tracker: it asks
the advice endpoint with the operator's token and shows the answer (the traffic of
test_advice_api: advice 3 numbers)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.async_api import async_playwright, expect

from tests.api.conftest import numbers, serving, visitor
from tests.simulate.test_advice_api import no_sweeping
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, require_chromium

pytestmark = pytest.mark.browser


async def test_the_report_page_shows_the_pool_advice(tmp_path: Path) -> None:
    require_chromium()
    async with serving(tmp_path, no_sweeping) as api, async_playwright() as pw:
        await api.ok("POST", "/api/v1/numbers", json={"numbers": numbers(3)})
        _, token = await api.account()
        site = await api.site(token, pool_max=2)
        t0 = api.services.clock() - timedelta(hours=2)
        url = "https://shop.example/"
        n_a = await visitor(api, site["id"], t0, url)
        await visitor(api, site["id"], t0 + timedelta(minutes=1), url)
        n_c = await visitor(api, site["id"], t0 + timedelta(minutes=2), url)
        await api.call(n_c, "+79160000003", t0 + timedelta(minutes=5))
        await api.call(n_a, "+79160000001", t0 + timedelta(minutes=10))

        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(api.base + "/dashboard/login")
            await page.fill("#token", token)
            await page.click("button[type=submit]")
            await page.wait_for_url(re.compile(r"/dashboard/$"))
            await page.goto(f"{api.base}/dashboard/sites/{site['id']}/reports")
            await page.fill("#a-days", "1")
            await page.click("#advice-form button[type=submit]")
            answer = page.locator("#advice .advice-answer")
            await expect(answer).to_have_text(re.compile(r"^Advice: 3 numbers .*100\.0%"))
            await expect(page.locator("#advice")).to_contain_text("a pool of 2 tracks 50.0%")
        finally:
            await browser.close()

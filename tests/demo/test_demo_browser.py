"""The newcomer's demo, end to end in headless Chromium from a fresh data folder: the landing page
shows a dynamic number, "call" makes the simulated Asterisk call it, and the dashboard shows the
call with its source and a recording that plays."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import pytest
from playwright.async_api import async_playwright, expect

from calltracking.config import Config
from calltracking.demo import DemoInfo, run_demo
from tests.store.seed import DESKTOP_UA
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, require_chromium

pytestmark = pytest.mark.browser
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
LANDING = "/demo/?utm_source=newsletter&utm_medium=email&utm_campaign=demo"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_the_demo_flow_from_landing_page_to_a_playable_recording(tmp_path: Path) -> None:
    require_chromium()
    infos: list[DemoInfo] = []
    ready, stop = asyncio.Event(), asyncio.Event()

    def on_ready(info: DemoInfo) -> None:
        infos.append(info)
        ready.set()

    demo = asyncio.create_task(
        run_demo(Config(), port=_free_port(), data=tmp_path / "data", ready=on_ready, stop=stop)
    )
    try:
        await asyncio.wait_for(ready.wait(), 30)
        info = infos[0]
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = await browser.new_context(user_agent=DESKTOP_UA)
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            await page.goto(info.base_url + LANDING)
            phone = page.locator("#phone")
            await expect(phone).to_have_attribute("href", "tel:+74957770001")
            await expect(phone).to_have_attribute(
                "href", re.compile(r"tel:\+7495111\d{4}"), timeout=15_000
            )
            number = (await phone.get_attribute("href") or "").removeprefix("tel:")
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(SCREENSHOTS / "demo-landing.png"))
            await page.click("#call")
            await expect(page.locator("#result")).to_contain_text("Call placed", timeout=10_000)

            await page.goto(info.base_url + "/dashboard/login")
            await page.fill("#token", info.token)
            await page.click("button[type=submit]")
            await page.wait_for_url(re.compile(r"/dashboard/$"))
            await page.goto(info.base_url + "/dashboard/calls")
            row = page.locator("#calls-body tr", has_text="newsletter")
            for _ in range(60):  # ringing first; answered once its 4 s talk is over
                if await row.count() and "answered" in await row.first.inner_text():
                    break
                await asyncio.sleep(0.5)
                await page.click("#refresh-calls")
            await expect(row).to_have_count(1)
            await expect(row).to_contain_text("answered")
            await expect(row).to_contain_text("dynamic")
            await page.screenshot(path=str(SCREENSHOTS / "demo-calls.png"))
            await row.locator("a").first.click()
            await page.wait_for_url(re.compile(r"/dashboard/calls/"))
            # The dialled number in the site's display format, its E.164 form in the title.
            did = page.locator('#call-details [data-key="did"] span')
            await expect(did).to_have_attribute("title", number, timeout=10_000)
            await expect(page.locator("#call-attribution")).to_contain_text("newsletter")
            for _ in range(40):  # MixMonitor closes the file late: the recording is confirmed then
                if await page.locator("#player").is_visible():
                    break
                await asyncio.sleep(0.5)
                await page.reload()
            await page.wait_for_function(
                "() => { const a = document.getElementById('audio'); return a.duration > 3 }"
            )
            await page.screenshot(path=str(SCREENSHOTS / "demo-call.png"), full_page=True)
            assert errors == []
            await browser.close()
    finally:
        stop.set()
        await asyncio.wait_for(demo, 30)

"""The dashboard as a product, in headless Chromium against the real tracker: the calls list
filters on the server (a match on any page), live calls, cards on a phone, a site created in the
dashboard whose pasted snippet works on the owner's page, the overview, qualification, and a
screenshot of every page at desktop and phone width (artifacts/screenshots/).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from playwright.async_api import Browser, ViewportSize, expect

from calltracking.core.kinds import AttributionKind, CallStatus
from calltracking.core.records import CallKey
from tests.store.seed import DESKTOP_UA
from tests.web.e2e_pages import OWN_DISPLAY, PHONE, HostPages
from tests.web.pages_seed import dynamic_number, seed_call
from tests.web.test_pages_browser import CALLER, NEW_CALLER, Dash
from tests.web.test_pages_browser import browser as browser  # the module's own Chromium
from tests.web.test_pages_browser import dash as dash  # a signed-out tab on a fresh tracker

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]
PHONE_VIEW = ViewportSize(width=390, height=844)
DESKTOP_VIEW = ViewportSize(width=1280, height=900)
NO_SIDEWAYS = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


@pytest_asyncio.fixture(loop_scope="module")
async def host_pages() -> AsyncIterator[HostPages]:
    pages = HostPages()
    await pages.start()
    yield pages
    await pages.stop()


async def test_the_calls_list_finds_a_match_on_any_page(dash: Dash) -> None:
    page, site = dash.page, dash.account.site
    number = await dynamic_number(dash.state, site)  # a google / cpc / spring visitor's number
    match = await seed_call(dash.state, number, CALLER, ago_s=0)
    for _ in range(56):  # newer calls push the match off the first page
        await seed_call(dash.state, site.defaults[AttributionKind.INITIAL], None, ago_s=-1)
    await dash.sign_in()
    await dash.open("/dashboard/calls")
    rows = page.locator("#calls-body tr[data-call]")
    await expect(rows).to_have_count(50)
    await expect(page.locator("#page-info")).to_have_text("Page 1 · 1–50 of 57 calls")
    await expect(page.locator(f'#calls-body tr[data-call="{match}"]')).to_have_count(0)

    await page.fill("#q-source", "Google")
    await page.click("#call-filters button[type=submit]")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-call", match)
    await expect(page.locator("#page-info")).to_have_text("Page 1 · 1–1 of 1 call")
    started = (await dash.api(f"/api/v1/calls/{match}"))["started_at"]
    assert isinstance(started, str)
    moscow = datetime.fromisoformat(started).astimezone(ZoneInfo("Europe/Moscow"))
    # the account's zone, whatever the browser's (Chromium here runs in the machine's zone)
    await expect(rows.first.locator("td.when")).to_have_text(moscow.strftime("%Y-%m-%d %H:%M:%S"))
    await expect(rows.first).to_contain_text("+7 (916) 123-45-67")  # the site's format
    await expect(page.locator("#next-page")).to_be_disabled()
    assert "source=Google" in page.url  # the filters stay in the link

    await page.fill("#q-source", "")
    await page.fill("#q-campaign", "spr")
    await page.click("#call-filters button[type=submit]")
    await expect(rows).to_have_count(1)
    await page.fill("#q-campaign", "")
    await page.fill("#q-text", "no such thing")
    await page.click("#call-filters button[type=submit]")
    await expect(page.locator("#calls-body")).to_contain_text("No calls match.")
    await expect(page.locator("#page-info")).to_have_text("Page 1 · 0 calls")


async def test_a_ringing_call_appears_live_and_a_phone_sees_cards(dash: Dash) -> None:
    page, site = dash.page, dash.account.site
    await seed_call(dash.state, site.defaults[AttributionKind.INITIAL], CALLER, ago_s=300)
    await dash.sign_in()
    await page.set_viewport_size(PHONE_VIEW)
    await dash.open("/dashboard/calls")
    rows = page.locator("#calls-body tr[data-call]")
    await expect(rows).to_have_count(1)
    await expect(page.locator("#live-state")).to_be_visible()
    recorder = dash.state.services.recorder
    key = CallKey("asterisk", "1799999999.1")
    ringing = await recorder.start_call(
        key, site.defaults[AttributionKind.EXPIRED], NEW_CALLER, datetime.now(UTC)
    )
    row = page.locator(f'#calls-body tr[data-call="{ringing.call_id}"]')
    await expect(row).to_contain_text("ringing")  # no refresh: the feed brought it
    await expect(rows).to_have_count(2)
    await recorder.end_call(key, datetime.now(UTC), CallStatus.MISSED)
    await expect(row).to_contain_text("missed")  # and updated it in place
    # a phone: each call a card of labelled lines, all sites so a site line, nothing sideways
    assert await row.evaluate("r => getComputedStyle(r).display") == "block"
    await expect(row.locator("td.col-site")).to_be_visible()
    await expect(row.locator("td.col-site")).to_have_text("shop")
    assert await page.evaluate(NO_SIDEWAYS) <= 0
    await dash.shot("calls-live-phone")


async def test_a_site_created_in_the_dashboard_gets_a_working_snippet(
    dash: Dash, browser: Browser, host_pages: HostPages
) -> None:
    page = dash.page
    await dash.sign_in()
    await page.click("#new-site")
    await page.wait_for_url(re.compile(r"/dashboard/sites/new$"))
    await page.fill("#n-name", "Garden")
    await page.fill("#n-domains", "127.0.0.1\nlocalhost")
    await page.fill("#n-initial", "+74950001001")
    await page.fill("#n-expired", "+74950001002")
    await page.fill("#n-untracked", "not a number")
    await page.click("#create-site")
    untracked = page.locator("#n-untracked")
    await expect(untracked).to_have_attribute("aria-invalid", "true")  # refused at its field
    await page.fill("#n-untracked", "+74950001003")
    await page.click("#create-site")
    await page.wait_for_url(re.compile(r"/dashboard/sites/\w+\?created=1$"))
    await expect(page.locator("#s-name")).to_have_value("Garden")

    await page.fill("#add-count", "2")
    await page.click("#add-numbers")
    await expect(page.locator("#numbers-added")).to_contain_text("Added 2 numbers")
    await expect(page.locator("#pool-body tr[data-number]")).to_have_count(2)  # after reload
    await expect(page.locator("#copy-slot button")).to_have_text("Copy snippet")
    snippet = await page.locator("#snippet").text_content()
    assert snippet and snippet.startswith("<script src=")
    await dash.shot("site-created")

    # a webhook target, then its "send a test event" button: the owner's server refuses POSTs
    site_id = page.url.split("/dashboard/sites/")[1].split("?")[0]
    hook = {"url": f"{host_pages.base}/hook", "events": ["call.ended"], "secret": "s"}
    await dash.patch(f"/api/v1/sites/{site_id}", {"settings": {"analytics": {"webhooks": [hook]}}})
    await page.reload()
    await page.click('#test-targets button[data-target="webhook-0"]')
    result = page.locator("#test-targets .test-result")
    await expect(result).to_contain_text("Not received")
    await expect(result).to_contain_text("HTTP 405")

    owner_page = host_pages.add(
        "/garden", f"<!doctype html><html><body><h1>Garden</h1>{PHONE}{snippet}</body></html>"
    )
    visitor = await browser.new_context(user_agent=DESKTOP_UA)  # not "HeadlessChrome": a bot
    try:
        tab = await visitor.new_page()
        await tab.goto(owner_page)
        phone = tab.locator("#phone")
        await expect(phone).not_to_have_text(OWN_DISPLAY, timeout=10_000)
        await expect(phone).to_have_text(re.compile(r"^\+7 \(495\) 111-"))  # a pool number
    finally:
        await visitor.close()


async def test_the_overview_compares_periods_and_tags_qualify_a_call(dash: Dash) -> None:
    page, site = dash.page, dash.account.site
    call_id = await seed_call(dash.state, site.defaults[AttributionKind.INITIAL], CALLER)
    await seed_call(
        dash.state, site.defaults[AttributionKind.EXPIRED], NEW_CALLER, status=CallStatus.MISSED
    )
    await dash.sign_in()
    await expect(page.locator("#qualification")).to_be_visible()  # shown once loaded
    await page.fill("#q-tags", "sale\nwrong number")
    await page.fill("#q-target-talk", "30")
    await page.click("#save-qualification")
    await expect(page.locator("#qualification-saved")).to_be_visible()

    await dash.open("/dashboard/overview")
    calls = page.locator('.kpi[data-figure="calls"] b')
    await expect(calls).to_have_text("2")
    await expect(page.locator('.kpi[data-figure="missed"] b')).to_have_text("1")
    await expect(page.locator('.kpi[data-figure="target_calls"] b')).to_have_text("1")
    await expect(page.locator('svg.chart[data-chart="per_day"] rect.bar')).to_have_count(7)
    today = page.locator("button[data-period=today]")
    await today.click()
    await expect(today).to_have_attribute("aria-pressed", "true")
    await expect(page.locator('svg.chart[data-chart="per_day"] rect.bar')).to_have_count(1)

    await dash.open(f"/dashboard/calls/{call_id}")
    await expect(page.locator("#call-zone")).to_have_text("Times in Europe/Moscow")
    await expect(page.locator("#target-call")).to_have_text("Target call: yes")
    await page.check("#call-tags input[value=sale]")
    await page.click("#save-tags")
    await expect(page.locator("#tags-saved")).to_be_visible()
    assert (await dash.api(f"/api/v1/calls/{call_id}"))["tags"] == ["sale"]
    await dash.open("/dashboard/calls?tag=sale")
    await expect(page.locator("#calls-body tr[data-call]")).to_have_count(1)
    await expect(page.locator("#calls-body .tag").first).to_have_text("sale")


@pytest.mark.parametrize(("width", "view"), [("desktop", DESKTOP_VIEW), ("phone", PHONE_VIEW)])
async def test_every_page_renders_at_desktop_and_phone_width(
    dash: Dash, width: str, view: ViewportSize
) -> None:
    page, site = dash.page, dash.account.site
    number = await dynamic_number(dash.state, site)
    call_id = await seed_call(dash.state, number, CALLER, recording=True, ago_s=0)
    await seed_call(
        dash.state, site.defaults[AttributionKind.INITIAL], NEW_CALLER, status=CallStatus.MISSED
    )
    await page.set_viewport_size(view)
    await dash.open("/dashboard/login")
    await dash.shot(f"login-{width}")
    await dash.sign_in()
    pages = {
        "sites": ("/dashboard/", "#sites-body tr[data-site]"),
        "overview": ("/dashboard/overview", ".kpi"),
        "site-overview": (f"/dashboard/sites/{site.id}/overview", ".kpi"),
        "site": (f"/dashboard/sites/{site.id}", "#pool-body tr[data-number]"),
        "site-new": ("/dashboard/sites/new", "#n-name"),
        "calls": ("/dashboard/calls", "#calls-body tr[data-call]"),
        "call": (f"/dashboard/calls/{call_id}", "#call-details dd"),
        "reports": (f"/dashboard/sites/{site.id}/reports", "#accuracy-figure"),
    }
    for name, (path, ready) in pages.items():
        await dash.open(path)
        await expect(page.locator(ready).first).to_be_visible()
        assert await page.evaluate(NO_SIDEWAYS) <= 0, name
        await dash.shot(f"{name}-{width}")

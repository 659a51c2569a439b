"""The operator dashboard (web/pages, web/static/dashboard.js, waveform.js) in headless Chromium
against the real tracker: pages are served by the app, data comes from the real JSON API with an
account token, and calls are seeded through the store as the PBX would report them.

Screenshots of the main pages go to artifacts/screenshots/ (git-ignored) for people to look at.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Browser, ConsoleMessage, async_playwright, expect
from playwright.async_api import Page as BrowserPage

from calltracking.core.kinds import AttributionKind, CallStatus
from calltracking.serve import Running
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, require_chromium
from tests.web.harness import tracker, web_config
from tests.web.pages_seed import Account, dynamic_number, fail_export, seed_account, seed_call

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
# Chromium logs refused requests itself (the wrong token's 401); those are not the page's errors.
BROWSER_NETWORK_LOG = re.compile(r"^Failed to load resource")
# label -> value of every bar or point of one chart.
VALUES_JS = "ms => Object.fromEntries(ms.map(m => [m.dataset.label, +m.dataset.value]))"
CALLER = "+79161234567"


def display_of(e164: str) -> str:
    """E.164 in the default display format `+7 (XXX) XXX-XX-XX`."""
    n = e164.removeprefix("+7")
    return f"+7 ({n[:3]}) {n[3:6]}-{n[6:8]}-{n[8:]}"


NEW_CALLER = "+79035550101"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        require_chromium()
        chromium = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"],
        )
        yield chromium
        await chromium.close()


@dataclass
class Dash:
    state: Running
    account: Account
    page: BrowserPage
    errors: list[str]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.state.http_port}"

    async def open(self, path: str) -> None:
        await self.page.goto(self.base + path)

    async def sign_in(self, token: str | None = None) -> None:
        await self.open("/dashboard/login")
        await self.page.fill("#token", token or self.account.token)
        await self.page.click("button[type=submit]")
        if token is None:
            await self.page.wait_for_url(re.compile(r"/dashboard/$"))

    async def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    async def api(self, path: str) -> dict[str, object]:
        headers = {"Authorization": f"Bearer {self.account.token}"}
        async with (
            aiohttp.ClientSession() as http,
            http.get(self.base + path, headers=headers) as response,
        ):
            assert response.status == 200, await response.text()
            body: dict[str, object] = await response.json()
            return body

    async def patch(self, path: str, payload: dict[str, object]) -> None:
        headers = {"Authorization": f"Bearer {self.account.token}"}
        async with (
            aiohttp.ClientSession() as http,
            http.patch(self.base + path, headers=headers, json=payload) as response,
        ):
            assert response.status == 200, await response.text()


@pytest_asyncio.fixture(loop_scope="module")
async def dash(browser: Browser, tmp_path: Path) -> AsyncIterator[Dash]:
    async with tracker(web_config(tmp_path)) as state:
        account = await seed_account(state)
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))

        def on_console(msg: ConsoleMessage) -> None:
            if msg.type == "error" and not BROWSER_NETWORK_LOG.match(msg.text):
                errors.append(f"console: {msg.text}")

        page.on("console", on_console)
        try:
            yield Dash(state, account, page, errors)
        finally:
            await context.close()
        assert errors == []


async def test_sign_in_refuses_a_wrong_token_and_keeps_the_right_one(dash: Dash) -> None:
    page = dash.page
    await dash.open("/")
    await page.wait_for_url(re.compile(r"/dashboard/login\?next="))

    await dash.sign_in("ct_not-a-real-token")
    error = page.locator("#login-error")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("not accepted")
    assert page.url.endswith("/dashboard/login?next=%2Fdashboard%2F") or "/login" in page.url
    await dash.shot("login-refused")

    await dash.sign_in()
    await expect(page.locator("#sites-body tr[data-site]")).to_have_count(1)
    await expect(page.locator("#sites-body")).to_contain_text("shop")
    await dash.shot("sites")

    # The token stays for this tab: another page opens without signing in again.
    await dash.open("/dashboard/calls")
    await expect(page.locator("#calls-body")).to_contain_text("No calls match")


async def test_a_changed_setting_is_saved_and_a_bad_one_is_refused_at_its_field(
    dash: Dash,
) -> None:
    page, site = dash.page, dash.account.site
    await dynamic_number(dash.state, site)  # the pool then shows one held number
    await dash.sign_in()
    await dash.open(f"/dashboard/sites/{site.id}")
    delay = page.locator("#f-show_delay_s")
    await expect(delay).to_have_value("0")
    await expect(page.locator("#pool-body tr[data-number] .state")).to_have_text(["held"])
    await expect(page.locator("#defaults")).to_contain_text("+74950009001")

    await delay.fill("45")
    await page.click("#save-settings")
    saved = page.locator("#saved")
    await expect(saved).to_be_visible()
    await expect(saved).to_have_text("Saved")
    await page.reload()
    await expect(page.locator("#f-show_delay_s")).to_have_value("45")
    settings = (await dash.api(f"/api/v1/sites/{site.id}"))["settings"]
    assert isinstance(settings, dict) and settings["show_delay_s"] == 45

    idle = page.locator("#f-idle_timeout_s")
    await idle.fill("0")
    await page.click("#save-settings")
    field = idle.locator("xpath=ancestor::div[contains(@class,'field')]")
    await expect(field.locator(".field-error")).to_contain_text("at least 1")
    await expect(idle).to_have_attribute("aria-invalid", "true")
    settings = (await dash.api(f"/api/v1/sites/{site.id}"))["settings"]
    assert isinstance(settings, dict) and settings["idle_timeout_s"] == 3600
    await dash.shot("site-settings")


async def test_a_new_call_appears_in_an_open_list_without_refresh_and_in_the_csv(
    dash: Dash,
) -> None:
    page, site = dash.page, dash.account.site
    first = await seed_call(dash.state, site.defaults[AttributionKind.INITIAL], CALLER, ago_s=300)
    await dash.sign_in()
    await dash.open(f"/dashboard/calls?site={site.id}")
    rows = page.locator("#calls-body tr[data-call]")
    await expect(rows).to_have_count(1)
    await expect(page.locator("#live-state")).to_be_visible()  # the feed is open

    second = await seed_call(
        dash.state,
        site.defaults[AttributionKind.EXPIRED],
        NEW_CALLER,
        status=CallStatus.MISSED,
        ago_s=10,
    )
    # no refresh: the live feed puts it in place, newest first, in the site's number format
    await expect(rows).to_have_count(2)
    await expect(rows.first).to_have_attribute("data-call", second)
    await expect(rows.first).to_contain_text("+7 (903) 555-01-01")
    await expect(rows.first).to_contain_text("missed")
    await expect(page.locator("#page-info")).to_have_text("Page 1 · 1–2 of 2 calls")
    await expect(page.locator("#th-time")).to_have_text("Started (Europe/Moscow)")

    await page.select_option("#q-status", "missed")
    await page.click("#call-filters button[type=submit]")
    await expect(rows).to_have_count(1)
    await page.select_option("#q-status", "")
    await page.click("#call-filters button[type=submit]")
    await expect(rows).to_have_count(2)
    await dash.shot("calls")

    async with page.expect_download() as download_info:
        await page.click("#export-csv")
    download = await download_info.value
    text = Path(await download.path()).read_text(encoding="utf-8-sig")
    table = list(csv.DictReader(io.StringIO(text)))
    assert [r["id"] for r in table] == [second, first]
    assert table[0]["caller"] == "'" + NEW_CALLER  # E.164 as text (core/spreadsheet.py)
    assert table[0]["kind"] == "expired"

    await rows.first.locator("a").click()
    await page.wait_for_url(re.compile(f"/dashboard/calls/{second}$"))
    await expect(page.locator("#no-recording")).to_be_visible()
    await expect(page.locator("#no-recording")).to_have_text(re.compile("No recording"))


async def test_a_call_page_plays_its_recording_and_draws_the_waveform(dash: Dash) -> None:
    page, site = dash.page, dash.account.site
    number = await dynamic_number(dash.state, site)
    call_id = await seed_call(dash.state, number, CALLER, recording=True, ago_s=0)
    await dash.sign_in()
    await dash.open(f"/dashboard/calls/{call_id}")

    details = page.locator("#call-details")
    # Numbers in the site's display format, the E.164 form in the title.
    await expect(details.locator('[data-key="did"]')).to_have_text(display_of(number))
    await expect(details.locator('[data-key="did"] span')).to_have_attribute("title", number)
    await expect(details.locator('[data-key="caller"]')).to_have_text("+7 (916) 123-45-67")
    await expect(details.locator('[data-key="status"]')).to_have_text("answered")
    await expect(details.locator('[data-key="talk_s"]')).to_have_text("32 s")
    attribution = page.locator("#call-attribution")
    await expect(attribution.locator('[data-key="kind"]')).to_have_text("held")
    await expect(attribution.locator('[data-key="source"]')).to_have_text("google")
    await expect(attribution.locator('[data-key="campaign"]')).to_have_text("spring")
    await expect(page.locator("#call-exports li")).to_have_count(2)

    audio = page.locator("#audio")
    await page.wait_for_function(
        "() => { const a = document.getElementById('audio'); return a.duration > 0 }"
    )
    duration = await audio.evaluate("a => a.duration")
    assert 1.9 < duration < 2.1  # 16160 frames at 8000 Hz
    await expect(page.locator("#rec-duration")).to_have_text("2 s")
    assert await page.locator("#rec-download").get_attribute("href") == await audio.evaluate(
        "a => a.src"
    )

    seeked = await audio.evaluate(
        """a => new Promise(done => {
             a.addEventListener('seeked', () => done(a.currentTime), {once: true});
             a.currentTime = 1.25;
           })"""
    )
    assert abs(seeked - 1.25) < 0.05
    await audio.evaluate("a => a.play()")
    await page.wait_for_function(
        "() => { const a = document.getElementById('audio'); return a.currentTime > 1.3 }"
    )

    canvas = page.locator("#waveform")
    await expect(canvas).to_have_attribute("data-drawn", "true")
    painted = await canvas.evaluate(
        """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                  let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n }"""
    )
    assert painted > 1000
    await dash.shot("call")


async def test_a_call_is_marked_spam_with_a_note_and_a_failed_export_retried(
    dash: Dash,
) -> None:
    page, site = dash.page, dash.account.site
    call_id = await seed_call(dash.state, site.defaults[AttributionKind.INITIAL], CALLER)
    await fail_export(dash.state, call_id, "ga4")
    await dash.sign_in()
    await dash.open(f"/dashboard/calls/{call_id}")

    ga4 = page.locator('#call-exports li[data-target="ga4"]')
    await expect(ga4.locator(".state")).to_have_text("failed")
    await expect(page.locator('#call-exports li[data-target="metrika"] button')).to_have_count(0)
    await ga4.locator("button", has_text="Retry").click()
    await expect(ga4.locator(".state")).to_have_text("pending")
    await expect(ga4.locator("button")).to_have_count(0)

    await page.check("#spam")
    await page.fill("#note", "robocall offering loans")
    await page.click("#review-form button[type=submit]")
    await expect(page.locator("#review-saved")).to_be_visible()
    call = await dash.api(f"/api/v1/calls/{call_id}")
    assert call["spam"] is True
    await page.reload()
    await expect(page.locator("#spam")).to_be_checked()


async def test_each_report_renders_as_a_chart_with_its_data(dash: Dash) -> None:
    page, site = dash.page, dash.account.site
    number = await dynamic_number(dash.state, site)
    await seed_call(dash.state, number, CALLER, recording=True, ago_s=0)
    await seed_call(
        dash.state, site.defaults[AttributionKind.INITIAL], NEW_CALLER, status=CallStatus.MISSED
    )
    await dash.sign_in()
    await dash.open(f"/dashboard/sites/{site.id}/reports")

    await expect(page.locator("#accuracy-figure")).to_have_text("50%")
    charts = {
        "accuracy_by_day": "circle.point",
        "by_source": "rect.bar",
        "calls_by_kind": "rect.bar",
        "calls_by_status": "rect.bar",
        "untracked_by_kind": "rect.bar",
        "pool": "rect.bar",
        "leads_by_month": "rect.bar",
    }
    for name, mark in charts.items():
        marks = page.locator(f'svg.chart[data-chart="{name}"] {mark}')
        await expect(marks.first).to_be_attached()
        assert await marks.count() > 0, name

    async def values(name: str, mark: str = "rect.bar") -> dict[str, float]:
        marks = page.locator(f'svg.chart[data-chart="{name}"] {mark}')
        found: dict[str, float] = await marks.evaluate_all(VALUES_JS)
        return found

    assert (await values("by_source"))["google / cpc / spring"] == 1
    kinds = await values("calls_by_kind")
    assert kinds["held"] == 1 and kinds["initial"] == 1
    assert (await values("calls_by_status"))["missed"] == 1
    assert sum((await values("leads_by_month")).values()) == 1
    assert sum((await values("accuracy_by_day", "circle.point")).values()) == 0.5
    assert (await values("pool"))["pool size"] >= 1
    await expect(page.locator('[data-report="advice"] .advice')).to_have_count(3)
    await expect(page.locator('[data-report="missed"]')).to_contain_text(
        "1 call ended before an answer."
    )
    # no duplicate "calls by kind", no rows of zeros: an empty histogram is a sentence
    await expect(page.locator('[data-report="calls"] table')).to_have_count(0)
    untracked = page.locator('[data-report="untracked"]')
    await expect(untracked.locator('svg[data-chart="expired_delays_s"]')).to_have_count(0)
    await expect(untracked).to_contain_text("None matched to a visitor who saw the expired number")
    await expect(page.locator('[data-report="pool"]')).to_contain_text("The pool never ran out")
    await expect(page.locator('[data-advice="pool_size"] p').first).to_contain_text("number")
    for reason in await page.locator('[data-report="advice"] p.muted').all_text_contents():
        assert reason[0].isupper() and reason.endswith("."), reason
    await expect(page.locator("#r-zone")).to_have_text("Days in Europe/Moscow")
    await dash.shot("reports")

    await page.set_viewport_size({"width": 390, "height": 844})  # a phone
    await page.reload()
    await expect(page.locator("#accuracy-figure")).to_have_text("50%")
    overflow = await page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    await dash.shot("reports-phone")

"""The dashboard's sign-in in headless Chromium against the real tracker: a new tab stays signed
in (the HttpOnly session cookie, not this tab's storage), sign-out in one tab ends it for all,
`next` never leaves the dashboard whatever it says, a cookie POST without the CSRF header is
refused from the page itself, and the dashboard's CSV cells follow the same table as the server's.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, async_playwright, expect
from playwright.async_api import Page as BrowserPage

from calltracking.serve import Running
from tests.core.test_spreadsheet import CELLS
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, require_chromium
from tests.web.harness import tracker, web_config
from tests.web.pages_seed import Account, seed_account

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

# Chromium logs refused requests itself (401 before sign-in, the 403s asked for here).
BROWSER_NETWORK_LOG = re.compile(r"^Failed to load resource")
SIGNED_IN_PAGE = re.compile(r"^http://127\.0\.0\.1:\d+/dashboard/(?!login)")
LOGIN_PAGE = re.compile(r"/dashboard/login")
# (next as the attacker writes it in the link, decoded by the page's URLSearchParams)
CROSS_SITE_NEXTS = [
    "//evil.example/x",
    "/\\evil.example/x",
    "/\\/evil.example",
    "/%5Cevil.example/x",
    "/%5cevil.example",
    "/%2F%2Fevil.example",
    "/%2fevil.example",
    "/%252F%252Fevil.example",
    "https://evil.example/",
    "http:evil.example",
    "javascript:alert(1)",
    "data:text/html,hi",
    "/\t/evil.example",
    "/\n/evil.example",
    " //evil.example",
    "\\\\evil.example",
    "/ /evil.example",
    "evil.example",
    "",
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    require_chromium()
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@dataclass
class Dash:
    state: Running
    account: Account
    context: BrowserContext
    errors: list[str]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.state.http_port}"

    async def tab(self, path: str) -> BrowserPage:
        page = await self.context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))

        def on_console(msg: ConsoleMessage) -> None:
            if msg.type == "error" and not BROWSER_NETWORK_LOG.match(msg.text):
                self.errors.append(f"console: {msg.text}")

        page.on("console", on_console)
        await page.goto(self.base + path)
        return page

    async def sign_in(self, page: BrowserPage, token: str | None = None) -> None:
        await page.fill("#token", token or self.account.token)
        await page.click("button[type=submit]")


@pytest_asyncio.fixture(loop_scope="module")
async def dash(browser: Browser, tmp_path: Path) -> AsyncIterator[Dash]:
    async with tracker(web_config(tmp_path)) as state:
        account = await seed_account(state)
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(10000)
        errors: list[str] = []
        try:
            yield Dash(state, account, context, errors)
        finally:
            await context.close()
        assert errors == []


async def test_a_new_tab_stays_signed_in_until_sign_out(dash: Dash) -> None:
    first = await dash.tab("/dashboard/calls")
    await first.wait_for_url(LOGIN_PAGE)
    await dash.sign_in(first)
    await first.wait_for_url(re.compile(r"/dashboard/calls$"))
    assert await first.evaluate("document.cookie") == ""  # HttpOnly: no script sees it
    assert await first.evaluate("sessionStorage.length + localStorage.length") == 0

    second = await dash.tab("/dashboard/")  # a new tab, as Ctrl+click opens one
    await expect(second.locator("#sites-body tr[data-site]")).to_have_count(1)
    assert second.url == dash.base + "/dashboard/"
    third = await dash.tab("/dashboard/login?next=%2Fdashboard%2Fcalls")  # signed in: goes on
    await third.wait_for_url(re.compile(r"/dashboard/calls$"))

    await second.click("#sign-out")
    await second.wait_for_url(LOGIN_PAGE)
    await first.reload()
    await first.wait_for_url(LOGIN_PAGE)  # the session ended for every tab
    assert [c["name"] for c in await dash.context.cookies()] == []


@pytest.mark.parametrize("target", [*CROSS_SITE_NEXTS[:6], "https://evil.example/"])
async def test_signing_in_with_a_cross_site_next_stays_on_the_dashboard(
    dash: Dash, target: str
) -> None:
    page = await dash.tab("/dashboard/login?next=" + quote(target, safe=""))
    await dash.sign_in(page)
    await page.wait_for_url(SIGNED_IN_PAGE)
    assert urlsplit(page.url).netloc == urlsplit(dash.base).netloc
    assert page.url == dash.base + "/dashboard/"


async def test_a_same_origin_next_is_followed(dash: Dash) -> None:
    page = await dash.tab("/dashboard/login?next=" + quote("/dashboard/calls?status=missed"))
    await dash.sign_in(page)
    await page.wait_for_url(re.compile(r"/dashboard/calls\?status=missed$"))


async def test_next_is_only_ever_a_dashboard_path(dash: Dash) -> None:
    page = await dash.tab("/dashboard/login")
    safe_next = "x => window.CalltrackingDashboard.safeNext(x)"
    for target in [*CROSS_SITE_NEXTS, "/api/v1/sites", "/demo/", "/dashboard/login?next=//x"]:
        assert await page.evaluate(safe_next, target) == "/dashboard/", target
    kept = ["/dashboard/", "/dashboard/calls?site=s1&source=a%2Fb", "/dashboard/sites/s1#pool"]
    for target in kept:
        assert await page.evaluate(safe_next, target) == target


async def test_a_cookie_post_without_the_csrf_header_is_refused_in_the_browser(
    dash: Dash,
) -> None:
    page = await dash.tab("/dashboard/login")
    await dash.sign_in(page)
    await page.wait_for_url(SIGNED_IN_PAGE)
    post = """async (headers) => {
      const r = await fetch('/api/v1/sites', {method: 'POST', headers: headers,
        body: JSON.stringify({name: 'x', domains: ['x.example'], defaults: {}})});
      return [r.status, (await r.json()).error.code];
    }"""
    assert await page.evaluate(post, {"Content-Type": "application/json"}) == [403, "csrf"]
    me: dict[str, Any] = await page.evaluate("fetch('/api/v1/session').then(r => r.json())")
    with_csrf = {"Content-Type": "application/json", "X-CSRF-Token": me["csrf"]}
    status, code = await page.evaluate(post, with_csrf)
    assert (status, code) == (422, "invalid")  # past CSRF: now the body is judged


async def test_dashboard_csv_cells_follow_the_server_table(dash: Dash) -> None:
    page = await dash.tab("/dashboard/login")
    cells = await page.evaluate(
        "vs => vs.map(v => window.CalltrackingDashboard.csvCell(v))", [v for v, _ in CELLS]
    )
    assert list(zip([v for v, _ in CELLS], cells, strict=True)) == [(v, c) for v, c in CELLS]

"""The snippet and the real tracker together, in headless Chromium: no scripted peer.

A host page on 127.0.0.1 (tests/web/e2e_pages.py) carries the snippet tag pointing at the real
tracker's web part (tests/web/harness.py); what the page shows is checked in its DOM, and what
the tracker decided in its database. Proven here: the default number first, then a dynamic one
after the delay (text and tel: link); two tabs of one visitor share the number and both turn to
`expired` on revocation, and activity in one brings both back; a reload and a tracker restart
keep the number; phone elements added later are replaced; a tracker that is down leaves the
page's own number and no page error; `lease_on: "visible"` leases nothing until the phone is
scrolled into view; crawlers and headless Chromium's own user agent get no dynamic number.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from playwright.async_api import Browser, BrowserContext, Page, WebSocket, async_playwright

from calltracking.core.kinds import AttributionKind
from calltracking.serve import Running
from calltracking.store import schema as t
from calltracking.store.sites import Site
from tests.store.seed import numbers, seed_site
from tests.support.browser import AUTOMATED_ARGS, CHROMIUM, CHROMIUM_ARGS, require_chromium
from tests.web.e2e_pages import FAR_PHONE, OWN_DISPLAY, OWN_E164, PHONE, HostPages, host_page
from tests.web.harness import tracker, web_config

# One Chromium for the module (launching it is most of a test's time); a context per test.
pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

# Headless Chromium says "HeadlessChrome", which the tracker counts as a robot.
DESKTOP_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
GOOGLEBOT_UA = (
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Googlebot/2.1; "
    "+http://www.google.com/bot.html) Chrome/131.0.0.0 Safari/537.36"
)
# Chromium's own log lines for a refused socket or script; they are not the page's errors.
BROWSER_NETWORK_LOG = re.compile(r"^(WebSocket connection to .* failed|Failed to load resource)")
DOMAINS = ("127.0.0.1", "localhost")
RESERVE = numbers(5)  # what seed_site puts in the reserve; the pool grows from it
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
POLL_MS = 50  # poll by timer, not animation frames: a background tab may not paint

SHOWS_JS = """([sel, text, href]) => {
  const e = document.querySelector(sel);
  return !!e && e.textContent.trim() === text && e.getAttribute('href') === href;
}"""
KIND_JS = """(kind) => !!window.calltracking && window.calltracking.state().kind === kind"""


def display_of(e164: str) -> str:
    """The default display format "+7 (XXX) XXX-XX-XX" filled with a Russian number."""
    d = e164.removeprefix("+7")
    return f"+7 ({d[:3]}) {d[3:6]}-{d[6:8]}-{d[8:]}"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@dataclass(slots=True)
class Watched:
    """A browser tab, what it reported as an error, and the number frames its sockets got."""

    page: Page
    errors: list[str] = field(default_factory=list)
    numbers: list[tuple[float, dict[str, Any]]] = field(default_factory=list)  # (loop time, frame)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def page_errors(self) -> list[str]:
        return [e for e in self.errors if not BROWSER_NETWORK_LOG.match(e)]

    def kinds(self, start: int = 0) -> list[str]:
        return [frame["kind"] for _, frame in self.numbers[start:]]

    async def wait_numbers(self, count: int, seconds: float = 5.0) -> list[str]:
        """Wait until the tab's sockets got `count` number frames; their kinds."""
        async with asyncio.timeout(seconds):
            while len(self.numbers) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.kinds()

    async def state(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.page.evaluate("window.calltracking.state()")
        return result

    async def wait_kind(self, kind: str, timeout_ms: float = 5000) -> dict[str, Any]:
        await self.page.wait_for_function(KIND_JS, arg=kind, polling=POLL_MS, timeout=timeout_ms)
        return await self.state()

    async def wait_shows(
        self, e164: str, display: str, sel: str = "#phone", timeout_ms: float = 5000
    ) -> None:
        await self.page.wait_for_function(
            SHOWS_JS, arg=[sel, display, f"tel:{e164}"], polling=POLL_MS, timeout=timeout_ms
        )

    async def phone(self, sel: str = "#phone") -> tuple[str, str | None]:
        text = (await self.page.text_content(sel) or "").strip()
        return text, await self.page.get_attribute(sel, "href")

    def on_socket(self, ws: WebSocket) -> None:
        # A lambda, not a bound method: playwright tags bound handlers' objects (no slots here).
        ws.on("framereceived", lambda payload: self.on_frame(payload))

    def on_frame(self, payload: str | bytes) -> None:
        frame = json.loads(payload)
        if frame.get("type") == "number":
            self.numbers.append((asyncio.get_running_loop().time(), frame))
            self.arrived.set()


async def open_tab(context: BrowserContext, url: str) -> Watched:
    page = await context.new_page()
    watched = Watched(page)
    page.on("pageerror", lambda error: watched.errors.append(f"pageerror: {error}"))
    page.on("console", lambda m: watched.errors.append(m.text) if m.type == "error" else None)
    page.on("websocket", lambda ws: watched.on_socket(ws))
    await page.goto(url)
    return watched


@dataclass(slots=True)
class Tracked:
    """The real tracker's web part and a site owner's page server, both on loopback."""

    tmp_path: Path
    pages: HostPages
    stack: AsyncExitStack = field(default_factory=AsyncExitStack)
    _state: Running | None = None
    _paths: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def state(self) -> Running:
        assert self._state is not None, "the tracker is not running"
        return self._state

    async def start(self, port: int = 0) -> None:
        """Start the tracker on `port` (0: a free one) over the test's database."""
        config = web_config(self.tmp_path, http_port=port)
        self._state = await self.stack.enter_async_context(tracker(config))

    @property
    def snippet_src(self) -> str:
        return f"http://127.0.0.1:{self.state.http_port}/snippet.js"

    async def site(self, **settings: Any) -> Site:
        return await seed_site(self.state.services.db, domains=DOMAINS, **settings)

    def page(self, site: Site, body: str = PHONE, src: str | None = None, **attrs: str) -> str:
        markup = host_page(body, src or self.snippet_src, site.key, **attrs)
        return self.pages.add(f"/page-{next(self._paths)}", markup)

    async def leases(self) -> list[sa.Row[Any]]:
        async with self.state.services.db.read() as conn:
            return list((await conn.execute(sa.select(t.leases))).all())

    async def active_leases(self) -> list[sa.Row[Any]]:
        return [row for row in await self.leases() if row.ended_at is None]

    async def stop(self) -> None:
        """Stop the tracker; the host pages stay up. The database stays for a restart."""
        await self.stack.aclose()


async def new_context(browser: Browser, user_agent: str | None = DESKTOP_UA) -> BrowserContext:
    context = await browser.new_context(
        user_agent=user_agent, viewport={"width": 1024, "height": 700}
    )
    context.set_default_timeout(5000)  # fail in seconds, not Playwright's default 30
    return context


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    require_chromium()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest_asyncio.fixture(loop_scope="module")
async def tracked(tmp_path: Path) -> AsyncIterator[Tracked]:
    pages = HostPages()
    await pages.start()
    tracked = Tracked(tmp_path, pages)
    try:
        await tracked.start()
        yield tracked
    finally:
        await tracked.stop()  # a test may have stopped it already: closing twice is a no-op
        await pages.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def context(browser: Browser, tracked: Tracked) -> AsyncIterator[BrowserContext]:
    # Asks for `tracked` so that the pages close before the tracker stops.
    context = await new_context(browser)
    yield context
    await context.close()


async def test_default_number_first_then_the_dynamic_one_after_the_delay(
    tracked: Tracked, context: BrowserContext
) -> None:
    site = await tracked.site(show_delay_s=1)
    assert site.defaults[AttributionKind.INITIAL] == OWN_E164
    tab = await open_tab(context, tracked.page(site))

    initial = await tab.wait_kind("initial")
    assert initial["e164"] == OWN_E164
    assert await tab.phone() == (OWN_DISPLAY, f"tel:{OWN_E164}")
    assert await tracked.leases() == []

    dynamic = await tab.wait_kind("dynamic", timeout_ms=4000)
    e164 = dynamic["e164"]
    assert e164 in RESERVE
    assert dynamic["display"] == display_of(e164)
    assert await tab.phone() == (display_of(e164), f"tel:{e164}")
    [lease] = await tracked.active_leases()
    assert (lease.number, lease.visitor_id) == (e164, dynamic["visitor"])
    cookie = {c["name"]: c["value"] for c in await context.cookies()}
    assert cookie["ct_vid"] == dynamic["visitor"]
    assert tab.kinds() == ["initial", "dynamic"]
    async with tracked.state.services.db.read() as conn:
        visit_started = await conn.scalar(
            sa.select(t.visits.c.started_at).where(t.visits.c.id == lease.visit_id)
        )
    # The show delay, measured on the server's clock (the browser's frames arrive after commits).
    assert lease.assigned_at - visit_started >= timedelta(seconds=1)

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / "e2e_dynamic_number.png"
    await tab.page.screenshot(path=str(shot))
    assert shot.stat().st_size > 0
    assert tab.page_errors() == []


async def test_two_tabs_share_the_number_and_both_expire_on_revocation(
    tracked: Tracked, context: BrowserContext
) -> None:
    site = await tracked.site(idle_timeout_s=2)
    url = tracked.page(site)
    one = await open_tab(context, url)
    first = await one.wait_kind("dynamic")
    two = await open_tab(context, url)  # same context: the ct_vid cookie goes along
    second = await two.wait_kind("dynamic")

    assert second["visitor"] == first["visitor"]
    assert second["e164"] == first["e164"]
    for tab in (one, two):
        assert await tab.phone() == (display_of(first["e164"]), f"tel:{first['e164']}")

    # No input in either tab: after two idle seconds the lease is revoked in both.
    expired = site.defaults[AttributionKind.EXPIRED]
    for tab in (one, two):
        await tab.wait_shows(expired, display_of(expired), timeout_ms=6000)
        assert (await tab.state())["kind"] == "expired"
    [lease] = await tracked.leases()
    assert (lease.number, lease.end_reason) == (first["e164"], "revoked")

    await two.page.mouse.move(200, 200)  # activity in one tab asks for a number for both
    for tab in (one, two):
        again = await tab.wait_kind("dynamic")
        await tab.wait_shows(again["e164"], display_of(again["e164"]))
    assert [row.visitor_id for row in await tracked.active_leases()] == [first["visitor"]]
    assert one.page_errors() == two.page_errors() == []


async def test_a_reload_keeps_the_number(tracked: Tracked, context: BrowserContext) -> None:
    site = await tracked.site(show_delay_s=1)
    tab = await open_tab(context, tracked.page(site))
    before = await tab.wait_kind("dynamic")
    seen = len(tab.numbers)

    await tab.page.reload()
    await tab.page.wait_for_function(
        "() => !!window.calltracking && window.calltracking.state().connected",
        polling=POLL_MS,
    )
    await tab.wait_numbers(seen + 1)
    after = await tab.wait_kind("dynamic")

    assert (after["visitor"], after["e164"]) == (before["visitor"], before["e164"])
    assert tab.kinds(seen) == ["dynamic"]  # at once: no initial number, no new delay
    assert await tab.phone() == (display_of(before["e164"]), f"tel:{before['e164']}")
    [active] = await tracked.active_leases()
    assert (active.number, active.visitor_id) == (before["e164"], before["visitor"])
    assert tab.page_errors() == []


async def test_a_tracker_restart_keeps_the_number_on_the_page(
    tracked: Tracked, context: BrowserContext
) -> None:
    site = await tracked.site()
    tab = await open_tab(context, tracked.page(site, **{"reconnect-ms": "50"}))
    before = await tab.wait_kind("dynamic")
    seen = len(tab.numbers)
    port = tracked.state.http_port
    assert port is not None

    await tracked.stop()  # closes the socket (1012): the snippet keeps its number, retries
    await tab.page.wait_for_function(
        "() => !window.calltracking.state().connected", polling=POLL_MS
    )
    await asyncio.sleep(0.3)
    assert await tab.phone() == (display_of(before["e164"]), f"tel:{before['e164']}")

    await tracked.start(port)  # same database, same address
    await tab.page.wait_for_function(
        "() => window.calltracking.state().connected", polling=POLL_MS, timeout=8000
    )
    await tab.wait_numbers(seen + 1)
    after = await tab.state()
    assert (after["visitor"], after["e164"]) == (before["visitor"], before["e164"])
    assert tab.kinds(seen) == ["dynamic"]  # back at once, within the hold
    assert await tab.phone() == (display_of(before["e164"]), f"tel:{before['e164']}")
    assert tab.page_errors() == []


async def test_a_phone_element_added_later_is_replaced_too(
    tracked: Tracked, context: BrowserContext
) -> None:
    site = await tracked.site()
    tab = await open_tab(context, tracked.page(site))
    e164 = (await tab.wait_kind("dynamic"))["e164"]

    await tab.page.evaluate(
        """([e164, display]) => setTimeout(() => {
          const footer = document.createElement('footer');
          footer.innerHTML = `<p>Or call <a id="late" class="calltracking-phone"
            href="tel:${e164}">${display}</a></p>`;
          document.body.appendChild(footer);
        }, 200)""",
        [OWN_E164, OWN_DISPLAY],
    )
    await tab.wait_shows(e164, display_of(e164), sel="#late")
    assert await tab.phone() == (display_of(e164), f"tel:{e164}")
    assert tab.page_errors() == []


@pytest.mark.parametrize("down", ["tracker-stopped", "socket-refused"])
async def test_a_tracker_that_is_down_leaves_the_page_as_it_was(
    tracked: Tracked, context: BrowserContext, down: str
) -> None:
    site = await tracked.site()
    if down == "tracker-stopped":  # the snippet itself cannot be loaded
        url = tracked.page(site)
        await tracked.stop()
    else:  # the snippet loads from the tracker, its socket finds nothing listening
        url = tracked.page(site, ws=f"ws://127.0.0.1:{closed_port()}/ws", **{"reconnect-ms": "50"})
    tab = await open_tab(context, url)
    await tab.page.wait_for_load_state("load")
    await asyncio.sleep(1.0)  # fifty-millisecond back-off: several attempts have failed

    assert await tab.phone() == (OWN_DISPLAY, f"tel:{OWN_E164}")
    assert tab.numbers == []
    loaded = await tab.page.evaluate("typeof window.calltracking === 'object'")
    if down == "socket-refused":
        assert loaded
        assert (await tab.state())["connected"] is False
        assert await tracked.leases() == []
    else:
        assert not loaded
    assert tab.page_errors() == []


async def test_lease_on_visible_leases_nothing_until_the_phone_is_scrolled_into_view(
    tracked: Tracked, context: BrowserContext
) -> None:
    site = await tracked.site(lease_on="visible")
    tab = await open_tab(context, tracked.page(site, FAR_PHONE))
    await tab.wait_kind("initial")
    await asyncio.sleep(1.0)  # time enough for a lease on load; the sweeper ran 20 times

    assert await tracked.leases() == []
    assert (await tab.state())["kind"] == "initial"
    assert await tab.phone("#far") == (OWN_DISPLAY, f"tel:{OWN_E164}")

    await tab.page.locator("#far").scroll_into_view_if_needed()
    e164 = (await tab.wait_kind("dynamic"))["e164"]
    await tab.wait_shows(e164, display_of(e164), sel="#far")
    [lease] = await tracked.active_leases()
    assert lease.number == e164
    assert tab.page_errors() == []


@pytest.mark.parametrize(
    "user_agent", [GOOGLEBOT_UA, None], ids=["googlebot", "headless-chrome-default"]
)
async def test_a_crawler_gets_no_dynamic_number(
    tracked: Tracked, browser: Browser, user_agent: str | None
) -> None:
    await _gets_no_dynamic_number(tracked, browser, user_agent)


async def test_an_automated_browser_with_a_desktop_user_agent_gets_no_dynamic_number(
    tracked: Tracked,
) -> None:
    # navigator.webdriver is true here (no AutomationControlled switch): the snippet reports it.
    require_chromium()
    async with async_playwright() as playwright:
        robot = await playwright.chromium.launch(executable_path=CHROMIUM, args=AUTOMATED_ARGS)
        try:
            await _gets_no_dynamic_number(tracked, robot, DESKTOP_UA)
        finally:
            await robot.close()


async def _gets_no_dynamic_number(
    tracked: Tracked, browser: Browser, user_agent: str | None
) -> None:
    site = await tracked.site()
    context = await new_context(browser, user_agent)
    try:
        tab = await open_tab(context, tracked.page(site, **{"activity-ms": "100"}))
        await tab.wait_kind("untracked")
        await tab.page.mouse.move(100, 100)  # activity does not make it a person
        await tab.page.mouse.move(300, 200)
        await tab.page.mouse.wheel(0, 100)
        await asyncio.sleep(1.0)

        untracked = site.defaults[AttributionKind.UNTRACKED]
        assert await tab.phone() in (
            (OWN_DISPLAY, f"tel:{OWN_E164}"),
            (display_of(untracked), f"tel:{untracked}"),
        )
        assert "dynamic" not in tab.kinds()
        assert await tracked.leases() == []
        async with tracked.state.services.db.read() as conn:
            bots = (await conn.execute(sa.select(t.visitors.c.bot))).scalars().all()
        assert list(bots) == [True]
        assert tab.page_errors() == []
    finally:
        await context.close()

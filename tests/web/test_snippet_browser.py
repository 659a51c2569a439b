"""web/static/snippet.js in headless Chromium against a scripted websocket peer.

The peer (snippet_peer.py) serves the page and the real snippet file and answers with contract
frames, so these tests pin the snippet's own behaviour: the hello it sends, what it does to the
page, cookies and consent, reconnecting, and the activity/visibility/want frames.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Route, async_playwright
from playwright.async_api import Page as BrowserPage

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, require_chromium
from tests.web.snippet_peer import (
    ORIGINAL_DISPLAY,
    ORIGINAL_E164,
    SITE_KEY,
    SNIPPET,
    Frame,
    Page,
    Script,
    SnippetPeer,
    number,
    welcome,
)

# One Chromium for the module (launching it is most of a test's time); a context per test.
pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

# Headless Chromium says "HeadlessChrome", which the server counts as a robot.
DESKTOP_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
HELLO_FIELDS = {
    "type", "site", "visitor", "tab", "url", "referrer", "ga", "ga_session", "ga_cookies", "ym",
}  # fmt: skip
DYNAMIC_E164 = "+74959990009"
DYNAMIC_DISPLAY = "+7 (495) 999-00-09"
# Chromium's own log lines for a refused socket or script; they are not the page's errors.
BROWSER_NETWORK_LOG = re.compile(r"^(WebSocket connection to .* failed|Failed to load resource)")

TEL = f'href="tel:{ORIGINAL_E164}"'
BODY = f"""
<p>Call <a id="link" class="calltracking-phone" {TEL}>{ORIGINAL_DISPLAY}</a></p>
<p><span id="span" data-calltracking>{ORIGINAL_DISPLAY}</span></p>
<p><a id="wrap" {TEL}><b>☎</b><span id="inner" data-calltracking>
  {ORIGINAL_DISPLAY} </span></a></p>
<p><a id="icon" class="calltracking-phone" {TEL}><i>☎</i> {ORIGINAL_DISPLAY}</a></p>
<p><a id="unmarked" {TEL}>{ORIGINAL_DISPLAY}</a></p>
"""
FAR_BODY = f"""
<div style="height: 4000px">top of a long page</div>
<p><span id="far" class="calltracking-phone">{ORIGINAL_DISPLAY}</span></p>
"""
# id -> [trimmed text, href of the closest <a>] for every element with an id.
SNAPSHOT_JS = """() => Object.fromEntries([...document.body.querySelectorAll('[id]')].map(
  e => [e.id, [e.textContent.replace(/\\s+/g, ' ').trim(),
               e.closest('a') && e.closest('a').getAttribute('href')]]))"""
ORIGINAL_SNAPSHOT = {
    "link": [ORIGINAL_DISPLAY, f"tel:{ORIGINAL_E164}"],
    "span": [ORIGINAL_DISPLAY, None],
    "wrap": [f"☎ {ORIGINAL_DISPLAY}", f"tel:{ORIGINAL_E164}"],
    "inner": [ORIGINAL_DISPLAY, f"tel:{ORIGINAL_E164}"],
    "icon": [f"☎ {ORIGINAL_DISPLAY}", f"tel:{ORIGINAL_E164}"],
    "unmarked": [ORIGINAL_DISPLAY, f"tel:{ORIGINAL_E164}"],
}
DYNAMIC_SNAPSHOT = {
    "link": [DYNAMIC_DISPLAY, f"tel:{DYNAMIC_E164}"],
    "span": [DYNAMIC_DISPLAY, None],
    "wrap": [f"☎ {DYNAMIC_DISPLAY}", f"tel:{DYNAMIC_E164}"],
    "inner": [DYNAMIC_DISPLAY, f"tel:{DYNAMIC_E164}"],
    "icon": [f"☎ {DYNAMIC_DISPLAY}", f"tel:{DYNAMIC_E164}"],
    "unmarked": [ORIGINAL_DISPLAY, f"tel:{ORIGINAL_E164}"],
}
SHOWS_DYNAMIC_JS = f"() => document.getElementById('link').textContent === '{DYNAMIC_DISPLAY}'"
SHOWS_ORIGINAL_JS = f"() => document.getElementById('span').textContent === '{ORIGINAL_DISPLAY}'"

PeerFactory = Callable[..., Awaitable[SnippetPeer]]


@dataclass(slots=True)
class Watched:
    """A page and everything it reported as an error (uncaught exceptions, console.error)."""

    page: BrowserPage
    errors: list[str] = field(default_factory=list)

    def page_errors(self) -> list[str]:
        return [e for e in self.errors if not BROWSER_NETWORK_LOG.match(e)]

    async def state(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.page.evaluate("window.calltracking.state()")
        return result

    async def snapshot(self) -> dict[str, list[str | None]]:
        result: dict[str, list[str | None]] = await self.page.evaluate(SNAPSHOT_JS)
        return result


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    require_chromium()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest_asyncio.fixture(loop_scope="module")
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(
        user_agent=DESKTOP_UA, viewport={"width": 1024, "height": 700}
    )
    context.set_default_timeout(5000)  # fail in seconds, not Playwright's default 30
    yield context
    await context.close()


@pytest_asyncio.fixture(loop_scope="module")
async def watched(context: BrowserContext) -> AsyncIterator[Watched]:
    page = await context.new_page()
    watched = Watched(page)
    page.on("pageerror", lambda error: watched.errors.append(f"pageerror: {error}"))
    page.on("console", lambda m: watched.errors.append(m.text) if m.type == "error" else None)
    yield watched
    assert watched.page_errors() == []


@pytest_asyncio.fixture(loop_scope="module")
async def make_peer() -> AsyncIterator[PeerFactory]:
    peers: list[SnippetPeer] = []

    async def make(
        body: str = BODY,
        replies: list[Frame] | None = None,
        close_code: int | None = None,
        **page: Any,
    ) -> SnippetPeer:
        peer = SnippetPeer(Page(body=body, **page), Script(replies or [], close_code))
        await peer.start()
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        await peer.stop()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# -- hello ------------------------------------------------------------------------------------

GA = "GA1.1.1234567890.1700000000"
GA_GS1 = ("_ga_ABC123", "GS1.1.1700000000.1.1.1700000100.0.0.0")
GA_GS2 = ("_ga_XYZ789", "GS2.1.s1700000200$o5$g1$t1700000300$j60$l0$h0")
YM_UID = "1699999999111222333"
GTAG_ANSWERS = """<script>
window.gtag = function (cmd, id, name, cb) {
  (window.gtagCalls = window.gtagCalls || []).push([cmd, id, name]);
  setTimeout(function () { cb(name === 'client_id' ? '%s' : '%s'); }, 20);
};</script>"""
YM_ANSWERS = """<script>
window.ym = function (counter, method, cb) { window.ymCall = [counter, method]; cb('%s'); };
</script>"""
SILENT_ANALYTICS = "<script>window.gtag = function () {}; window.ym = function () {};</script>"


@dataclass(frozen=True, slots=True)
class HelloCase:
    name: str
    cookies: dict[str, str]
    head: str
    attrs: dict[str, str]
    expected: dict[str, Any]  # ga, ga_session, ga_cookies, ym


HELLO_CASES = [
    HelloCase("nothing", {}, "", {}, {}),
    HelloCase(
        "gtag-and-ym-answer",
        {"_ga": GA, GA_GS1[0]: GA_GS1[1], GA_GS2[0]: GA_GS2[1]},
        GTAG_ANSWERS % ("1234567890.1700000000", "1700000999") + YM_ANSWERS % "42424242",
        {"ga": "G-ABC123", "ym": "12345"},
        {
            "ga": GA,
            "ga_session": "1700000999",
            "ga_cookies": dict([GA_GS1, GA_GS2]),
            "ym": "42424242",
        },
    ),
    HelloCase(
        "cookies-only-gs2",
        {"_ga": GA, GA_GS1[0]: GA_GS1[1], GA_GS2[0]: GA_GS2[1], "_ym_uid": YM_UID},
        "",
        {"ga": "G-XYZ789"},
        {
            "ga": GA,
            "ga_session": "1700000200",
            "ga_cookies": dict([GA_GS1, GA_GS2]),
            "ym": YM_UID,
        },
    ),
    HelloCase(
        "silent-analytics-gs1",
        {"_ga": GA, GA_GS1[0]: GA_GS1[1]},
        SILENT_ANALYTICS,
        {"ga": "G-ABC123", "ym": "12345"},
        {"ga": GA, "ga_session": "1700000000", "ga_cookies": dict([GA_GS1])},
    ),
    HelloCase(
        "gtag-without-cookies",
        {},
        GTAG_ANSWERS % ("555.666", "777"),
        {"ga": "G-ABC123"},
        {"ga": "GA1.1.555.666", "ga_session": "777"},
    ),
]


@pytest.mark.parametrize("case", HELLO_CASES, ids=[c.name for c in HELLO_CASES])
async def test_hello_has_exactly_the_contract_fields(
    make_peer: PeerFactory, context: BrowserContext, watched: Watched, case: HelloCase
) -> None:
    peer = await make_peer(head=case.head, attrs=case.attrs)
    await context.add_cookies(
        [{"name": k, "value": v, "url": peer.base} for k, v in case.cookies.items()]
    )
    url = f"{peer.page_url}?utm_source=test&x=1"
    await watched.page.goto(url, referer="https://www.google.com/")

    [hello] = await peer.wait_frames("hello")

    assert set(hello) == HELLO_FIELDS
    assert re.fullmatch(r"[0-9a-f]{32}", hello["tab"])
    assert hello["referrer"] == await watched.page.evaluate("document.referrer") != ""
    analytics = {"ga": None, "ga_session": None, "ga_cookies": None, "ym": None}
    assert hello == {
        "type": "hello",
        "site": SITE_KEY,
        "visitor": None,
        "tab": hello["tab"],
        "url": url,
        "referrer": hello["referrer"],
        **analytics,
        **case.expected,
    }
    if "ym" in case.attrs and "42424242" in case.head:
        assert await watched.page.evaluate("window.ymCall") == [12345, "getClientID"]


async def test_tab_id_is_new_for_each_page_load(make_peer: PeerFactory, watched: Watched) -> None:
    peer = await make_peer()
    await watched.page.goto(peer.page_url)
    await peer.wait_frames("hello")
    await watched.page.reload()
    first, second = await peer.wait_frames("hello", 2)
    assert first["tab"] != second["tab"]


# -- the page ---------------------------------------------------------------------------------


async def test_number_replaces_marked_elements_and_no_number_restores_them(
    make_peer: PeerFactory, watched: Watched
) -> None:
    peer = await make_peer(replies=[welcome()])
    await watched.page.goto(peer.page_url)
    await peer.wait_frames("hello")
    assert await watched.snapshot() == ORIGINAL_SNAPSHOT
    # The site's own script changes its number before ours came: that is the original now.
    await watched.page.evaluate(
        "() => { document.getElementById('link').firstChild.data = '+7 (495) 222-00-02'; }"
    )
    original_html = await watched.page.inner_html("body")

    await peer.send_all(number(DYNAMIC_E164, DYNAMIC_DISPLAY))
    await watched.page.wait_for_function(SHOWS_DYNAMIC_JS)
    assert await watched.snapshot() == DYNAMIC_SNAPSHOT
    assert await watched.page.inner_html("#icon i") == "☎"  # only the number's text changed
    assert await watched.state() == {
        "connected": True,
        "kind": "dynamic",
        "e164": DYNAMIC_E164,
        "display": DYNAMIC_DISPLAY,
        "visitor": "v-1",
    }

    await peer.send_all(number(None, None, kind="expired"))
    await watched.page.wait_for_function(SHOWS_ORIGINAL_JS)
    assert await watched.page.inner_html("body") == original_html


async def test_display_falls_back_to_e164(make_peer: PeerFactory, watched: Watched) -> None:
    peer = await make_peer(replies=[welcome(), number(DYNAMIC_E164, None, kind="initial")])
    await watched.page.goto(peer.page_url)
    await watched.page.wait_for_function(
        f"() => document.getElementById('span').textContent === '{DYNAMIC_E164}'"
    )


async def test_elements_added_later_are_replaced_too(
    make_peer: PeerFactory, watched: Watched
) -> None:
    peer = await make_peer(replies=[welcome(), number(DYNAMIC_E164, DYNAMIC_DISPLAY)])
    await watched.page.goto(peer.page_url)
    await watched.page.wait_for_function(SHOWS_DYNAMIC_JS)

    await watched.page.evaluate(
        """([e164, display]) => {
          const p = document.createElement('p');
          p.innerHTML = `<a id="late" class="calltracking-phone" href="tel:${e164}">${display}</a>`;
          document.body.appendChild(p);
        }""",
        [ORIGINAL_E164, ORIGINAL_DISPLAY],
    )
    await watched.page.wait_for_function(
        f"() => document.getElementById('late').textContent === '{DYNAMIC_DISPLAY}'"
    )
    assert await watched.page.get_attribute("#late", "href") == f"tel:{DYNAMIC_E164}"

    # An element that becomes marked later counts too.
    await watched.page.evaluate(
        "() => document.getElementById('unmarked').classList.add('calltracking-phone')"
    )
    await watched.page.wait_for_function(
        f"() => document.getElementById('unmarked').textContent === '{DYNAMIC_DISPLAY}'"
    )
    assert await watched.page.get_attribute("#unmarked", "href") == f"tel:{DYNAMIC_E164}"

    # A framework re-rendering the site's number over ours gets ours back.
    await watched.page.evaluate(
        f"() => {{ document.getElementById('span').firstChild.data = '{ORIGINAL_DISPLAY}'; }}"
    )
    await watched.page.wait_for_function(
        f"() => document.getElementById('span').textContent === '{DYNAMIC_DISPLAY}'"
    )


# -- visitor cookie and consent ---------------------------------------------------------------


async def _cookie(context: BrowserContext, name: str) -> Any:
    return next((c for c in await context.cookies() if c["name"] == name), None)


async def test_visitor_cookie_is_written_from_welcome_and_sent_on_reload(
    make_peer: PeerFactory, context: BrowserContext, watched: Watched
) -> None:
    peer = await make_peer(replies=[welcome("v-abc")])
    await watched.page.goto(peer.page_url)
    await watched.page.wait_for_function("() => window.calltracking.state().visitor === 'v-abc'")

    cookie = await _cookie(context, "ct_vid")
    assert cookie is not None
    assert (cookie["value"], cookie["path"], cookie["sameSite"]) == ("v-abc", "/", "Lax")
    lifetime = cookie["expires"] - await watched.page.evaluate("Date.now() / 1000")
    assert 364 * 86400 < lifetime <= 365 * 86400

    await watched.page.reload()
    first, second = await peer.wait_frames("hello", 2)
    assert (first["visitor"], second["visitor"]) == (None, "v-abc")


@pytest.mark.parametrize("told_by", ["script-attribute", "welcome-frame"])
async def test_with_consent_required_no_cookie_until_consent(
    make_peer: PeerFactory, context: BrowserContext, watched: Watched, told_by: str
) -> None:
    if told_by == "script-attribute":
        peer = await make_peer(replies=[welcome("v-c")], attrs={"consent": "required"})
    else:
        peer = await make_peer(replies=[welcome("v-c", consent_required=True)])
    await watched.page.goto(peer.page_url)
    await watched.page.wait_for_function("() => window.calltracking.state().visitor === 'v-c'")
    assert await _cookie(context, "ct_vid") is None
    assert await watched.page.evaluate("document.cookie") == ""

    await watched.page.evaluate("window.calltracking.consent(true)")
    cookie = await _cookie(context, "ct_vid")
    assert cookie is not None
    assert cookie["value"] == "v-c"

    await watched.page.evaluate("window.calltracking.consent(false)")  # withdrawn: erased
    assert await _cookie(context, "ct_vid") is None


# -- failures and reconnecting ----------------------------------------------------------------


async def _fulfil_snippet(route: Route) -> None:
    await route.fulfill(path=SNIPPET, content_type="application/javascript")


@pytest.mark.parametrize("down", ["websocket-refused", "snippet-unreachable"])
async def test_tracker_down_leaves_the_page_as_it_was(
    make_peer: PeerFactory, context: BrowserContext, watched: Watched, down: str
) -> None:
    tracker = f"http://127.0.0.1:{closed_port()}"
    if down == "websocket-refused":  # the script loads, its socket finds nothing listening
        await context.route(f"{tracker}/snippet.js", _fulfil_snippet)
    sockets: list[str] = []
    watched.page.on("websocket", lambda ws: sockets.append(ws.url))
    peer = await make_peer(src=f"{tracker}/snippet.js", attrs={"reconnect-ms": "50"})

    await watched.page.goto(peer.page_url)
    await watched.page.wait_for_load_state("load")
    await asyncio.sleep(1.0)

    assert await watched.snapshot() == ORIGINAL_SNAPSHOT
    loaded = await watched.page.evaluate("typeof window.calltracking === 'object'")
    if down == "websocket-refused":
        assert loaded
        assert (await watched.state())["connected"] is False
        assert len(sockets) >= 2  # it kept trying, with back-off
        # The site rides along so a proxy can keep a site's sockets on one node.
        assert set(sockets) == {f"ws://{tracker.removeprefix('http://')}/ws?site={SITE_KEY}"}
    else:
        assert not loaded
    assert watched.page_errors() == []


async def test_reconnects_after_the_peer_closes(make_peer: PeerFactory, watched: Watched) -> None:
    peer = await make_peer(
        replies=[welcome("v-r"), number(DYNAMIC_E164, DYNAMIC_DISPLAY)],
        attrs={"reconnect-ms": "50"},
    )
    await watched.page.goto(peer.page_url)
    await watched.page.wait_for_function(SHOWS_DYNAMIC_JS)

    await peer.close_all(1011)
    first, second = await peer.wait_frames("hello", 2)

    assert peer.connections == 2
    assert (second["visitor"], second["tab"]) == ("v-r", first["tab"])
    assert await watched.snapshot() == DYNAMIC_SNAPSHOT


@pytest.mark.parametrize("code", [4403, 4404, 4410])
async def test_no_reconnect_after_a_permanent_close(
    make_peer: PeerFactory, watched: Watched, code: int
) -> None:
    peer = await make_peer(
        replies=[welcome(), number(DYNAMIC_E164, DYNAMIC_DISPLAY)],
        close_code=code,
        attrs={"reconnect-ms": "50"},
    )
    await watched.page.goto(peer.page_url)
    await peer.wait_frames("hello")
    await watched.page.wait_for_function("() => !window.calltracking.state().connected")
    await asyncio.sleep(1.0)  # fifty-millisecond back-off: many retries would have happened

    assert peer.connections == 1
    assert await watched.snapshot() == ORIGINAL_SNAPSHOT  # the site's own number is back


# -- activity, visibility, want ---------------------------------------------------------------


BURST_JS = """() => {
  for (let i = 0; i < 20; i++) {
    for (const type of ['mousemove', 'scroll', 'keydown', 'touchstart', 'click']) {
      document.body.dispatchEvent(new Event(type, {bubbles: true}));
    }
  }
}"""


async def test_activity_frames_are_throttled(make_peer: PeerFactory, watched: Watched) -> None:
    peer = await make_peer(replies=[welcome()], attrs={"activity-ms": "1000"})
    page = watched.page
    await page.goto(peer.page_url)
    await peer.wait_frames("hello")
    await page.wait_for_function("() => window.calltracking.state().visitor === 'v-1'")
    assert peer.frames("activity") == []

    await page.evaluate(BURST_JS)  # a hundred events of every kind within one throttle window
    await peer.wait_frames("activity")
    await asyncio.sleep(0.3)
    assert len(peer.frames("activity")) == 1

    await asyncio.sleep(0.8)
    await page.mouse.move(200, 200)  # real input, after the window
    await page.mouse.wheel(0, 50)
    await page.keyboard.press("Tab")
    await peer.wait_frames("activity", 2)
    await asyncio.sleep(0.3)
    times = [r.at for r in peer.received if r.frame == {"type": "activity"}]
    assert len(times) == 2
    assert times[1] - times[0] >= 0.8


async def test_visibility_changes_are_reported(make_peer: PeerFactory, watched: Watched) -> None:
    peer = await make_peer(replies=[welcome()])
    await watched.page.goto(peer.page_url)
    await peer.wait_frames("hello")
    await watched.page.wait_for_function("() => window.calltracking.state().visitor === 'v-1'")

    for state in ("hidden", "visible"):
        await watched.page.evaluate(
            """(state) => {
              Object.defineProperty(
                document, 'visibilityState', {configurable: true, get: () => state});
              document.dispatchEvent(new Event('visibilitychange'));
            }""",
            state,
        )
    await peer.wait_frames("visibility", 2)
    assert peer.frames("visibility") == [
        {"type": "visibility", "state": "hidden"},
        {"type": "visibility", "state": "visible"},
    ]


@pytest.mark.parametrize(
    ("told_by", "seen_by"),
    [("script-attribute", "scrolling"), ("welcome-frame", "scrolling"), ("welcome-frame", "click")],
)
async def test_lease_on_visible_wants_once_a_phone_was_seen(
    make_peer: PeerFactory, watched: Watched, told_by: str, seen_by: str
) -> None:
    if told_by == "script-attribute":
        peer = await make_peer(body=FAR_BODY, replies=[welcome()], attrs={"lease-on": "visible"})
    else:
        peer = await make_peer(body=FAR_BODY, replies=[welcome(lease_on="visible")])
    page = watched.page
    await page.goto(peer.page_url)
    await peer.wait_frames("hello")
    await page.wait_for_function("() => window.calltracking.state().visitor === 'v-1'")
    await asyncio.sleep(0.5)
    assert peer.frames("want") == []

    if seen_by == "scrolling":
        await page.locator("#far").scroll_into_view_if_needed()
    else:
        await page.evaluate("document.getElementById('far').click()")
    await peer.wait_frames("want")
    await page.evaluate("window.scrollTo(0, 0)")
    await page.locator("#far").scroll_into_view_if_needed()
    await page.evaluate("document.getElementById('far').click()")
    await asyncio.sleep(0.5)
    assert peer.frames("want") == [{"type": "want"}]


async def test_no_want_when_the_site_leases_on_load(
    make_peer: PeerFactory, watched: Watched
) -> None:
    peer = await make_peer(body=FAR_BODY, replies=[welcome()])
    await watched.page.goto(peer.page_url)
    await peer.wait_frames("hello")
    await watched.page.locator("#far").scroll_into_view_if_needed()
    await asyncio.sleep(0.5)
    assert peer.frames("want") == []


async def test_https_script_source_means_a_wss_socket(
    make_peer: PeerFactory, context: BrowserContext, watched: Watched
) -> None:
    await context.route("https://tracker.invalid/**", _fulfil_snippet)
    sockets: list[str] = []
    watched.page.on("websocket", lambda ws: sockets.append(ws.url))
    peer = await make_peer(src="https://tracker.invalid/snippet.js?v=3")
    await watched.page.goto(peer.page_url)
    await watched.page.wait_for_function("() => typeof window.calltracking === 'object'")
    await watched.page.wait_for_timeout(300)
    assert sockets[:1] == [f"wss://tracker.invalid/ws?site={SITE_KEY}"]


INTERACTIONS = ("pointerdown", "keydown", "scroll", "touchstart")


@pytest.mark.parametrize("told_by", ["script-attribute", "welcome-frame"])
@pytest.mark.parametrize("interaction", INTERACTIONS)
async def test_lease_on_interaction_wants_after_the_first_pointer_scroll_or_key(
    make_peer: PeerFactory, watched: Watched, told_by: str, interaction: str
) -> None:
    if told_by == "script-attribute":
        attrs = {"lease-on": "interaction", "activity-ms": "0"}
        peer = await make_peer(body=FAR_BODY, replies=[welcome()], attrs=attrs)
    else:
        replies = [welcome(lease_on="interaction")]
        peer = await make_peer(body=FAR_BODY, replies=replies, attrs={"activity-ms": "0"})
    page = watched.page
    await page.goto(peer.page_url)
    await peer.wait_frames("hello")
    await page.wait_for_function("() => window.calltracking.state().visitor === 'v-1'")

    await page.mouse.move(100, 100)  # moving the pointer is activity, not an interaction
    await peer.wait_frames("activity")
    assert peer.frames("want") == []

    if interaction == "pointerdown":
        await page.mouse.down()
        await page.mouse.up()
    elif interaction == "keydown":
        await page.keyboard.press("Tab")
    elif interaction == "scroll":
        await page.mouse.wheel(0, 50)
    else:
        await page.evaluate("window.dispatchEvent(new Event('touchstart'))")
    await peer.wait_frames("want")
    seen = len(peer.frames("activity"))
    await page.keyboard.press("Tab")
    await page.mouse.wheel(0, 50)
    await peer.wait_frames("activity", seen + 2)  # later input went out as activity only
    assert peer.frames("want") == [{"type": "want"}]
    assert [f["type"] for f in peer.frames()].index("want") > 1

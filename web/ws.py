"""`GET /ws`: the visitor websocket (CONTRACT.md, "Visitor websocket and site snippet").

Rules kept here:
- the first frame must be a hello within 10 s of the upgrade (else close 4408), however many pings
  come meanwhile; the hello names the site (unknown:
  4404) and the `Origin` must be one of its domains or their subdomains (else 4403);
- a frame that is not a JSON object with a string `type`, a binary frame, or a second hello is
  malformed (web/frames.py: also JSON nested too deep, text with a NUL or a lone surrogate): an
  `error` frame, then close 4400; frames over 4 KiB are refused (1009);
- frames of an unknown `type` are ignored, so the snippet can grow;
- more than 60 frames in 10 s is a broken or hostile tab: `error`, then close 4400; visibility
  frames touch the database only when the state changes;
- one address may hold `CALLTRACKING_WS_MAX_PER_ADDRESS` sockets (4429); the address is the
  peer's, or the last `X-Forwarded-For` hop when the peer is a trusted proxy;
- nothing a client sends touches another visitor: every change goes through its own visitor id.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from urllib.parse import urlsplit

from aiohttp import WSMessage, WSMsgType, web

from calltracking.core.engine.abuse import address_key
from calltracking.services import Services
from calltracking.store.sites import Site
from calltracking.store.visitors import Welcome
from web.frames import FRAME_BURST, FRAME_WINDOW_S, FrameRate, Malformed, parse_frame, parse_hello
from web.hub import Hub, Tab
from web.keys import HUB, SERVICES, SITES
from web.outgoing import welcome_text
from web.shed import shed_after_hello, shed_after_upgrade

log = logging.getLogger(__name__)
HELLO_TIMEOUT_S = 10.0
MAX_FRAME = 4096
HEARTBEAT_S = 25.0
MIN_ACTIVITY_INTERVAL_S = 1.0


def client_address(request: web.Request, trusted: tuple[str, ...]) -> str:
    peer = request.remote or "?"
    # The last hop of the last header line is what the trusted proxy itself saw: a proxy that
    # adds its own line (HAProxy `option forwardfor`) leaves a client's forged line before it.
    lines = request.headers.getall("X-Forwarded-For", [])
    if lines and peer in trusted:
        return lines[-1].split(",")[-1].strip() or peer
    return peer


@functools.lru_cache(maxsize=4096)  # a site's visitors come from a few origins
def origin_allowed(origin: str | None, domains: tuple[str, ...]) -> bool:
    if not origin:
        return False
    host = (urlsplit(origin).hostname or "").lower().rstrip(".")
    return any(host == d.lower() or host.endswith("." + d.lower()) for d in domains)


async def visitor_socket(request: web.Request) -> web.WebSocketResponse:
    # One coroutine for the socket's whole life: a held socket keeps this frame, so the receive
    # loop and the tab's cleanup are inline rather than in nested coroutines (each nested
    # frame cost every held socket a few hundred bytes: bench/ws_bench.py --trace).
    services: Services = request.app[SERVICES]
    hub: Hub = request.app[HUB]
    address = client_address(request, services.config.trusted_proxies)
    group = address_key(address)  # IPv6 counts by /64, as the engine's caps do
    if group == address:
        group = address  # one string held for both, not two equal ones
    # No permessage-deflate: frames are a few hundred bytes, and a browser that negotiates it
    # would cost a zlib state (hundreds of KiB) per held socket.
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_FRAME, compress=False)
    try:
        await ws.prepare(request)
    except ConnectionError:  # the client left during the handshake (seen in bench/soak.py)
        log.info("visitor socket from %s closed during the handshake", address)
        return ws
    shed_after_upgrade(request, ws)
    if hub.connections_from(group) >= services.config.ws_max_per_address:
        await ws.close(code=4429, message=b"too many connections from this address")
        return ws
    hub.reserve_address(group)
    try:
        # The hello, its frame and its request details are dropped once admitted: only what
        # the socket needs for its life stays referenced (memory per held socket).
        admitted = await _admit(request, ws, services, address)
        if admitted is None:
            return ws
        shed_after_hello(request)
        site, welcome = admitted.site, admitted.welcome
        tab = Tab(ws, site.id, welcome.visitor_id, welcome.tab_id, address)
        hub.add(tab)
        # Per tab at debug level: at a thousand tabs a second these lines would be the log;
        # the hub writes a summary a minute instead.
        log.debug("visitor %s tab %s connected (site %s)", tab.visitor_id, tab.tab_id, site.id)
        try:
            await _greet(ws, services, hub, tab, admitted)
            del admitted, welcome
            last_activity = 0.0
            visible = True
            rate: FrameRate | None = None  # made at the first frame: most tabs send none
            while True:
                msg = await ws.receive()
                if msg.type in _ENDED:
                    break
                try:
                    if rate is None:
                        rate = FrameRate()
                    if not rate.allow(time.monotonic()):
                        raise Malformed(f"more than {FRAME_BURST} frames in {FRAME_WINDOW_S:g} s")
                    if msg.type is not WSMsgType.TEXT:
                        raise Malformed("only JSON text frames are accepted")
                    frame = parse_frame(msg.data)
                    kind = frame["type"]
                    if kind == "hello":
                        raise Malformed("a second hello")
                    if kind == "activity":
                        if time.monotonic() - last_activity < MIN_ACTIVITY_INTERVAL_S:
                            continue
                        last_activity = time.monotonic()
                        shown, changed = await services.visitors.activity(
                            site, tab.visitor_id, tab.tab_id, services.clock()
                        )
                        await hub.push(tab.visitor_id, shown)
                        await hub.refresh(changed)
                    elif kind == "visibility":
                        state = frame.get("state")
                        if state not in ("hidden", "visible"):
                            raise Malformed("visibility state is hidden or visible")
                        if (state == "visible") != visible:  # only changes touch the database
                            visible = state == "visible"
                            await services.visitors.visibility(
                                tab.tab_id, visible, services.clock()
                            )
                    elif kind == "want" and site.settings.lease_on in ("visible", "interaction"):
                        shown, changed = await services.visitors.want(
                            site, tab.visitor_id, services.clock()
                        )
                        await hub.push(tab.visitor_id, shown)
                        await hub.refresh(changed)
                except Malformed as exc:
                    await _refuse(ws, 4400, str(exc))
                    return ws
        finally:
            await _tab_closed(services, hub, site, tab)
    except ConnectionError:  # the client left while we wrote to it: its tab closed as usual
        log.info("visitor socket from %s went away mid-frame", address)
    except Exception:
        log.exception("visitor socket from %s failed", address)
        with contextlib.suppress(Exception):
            await ws.close(code=1011, message=b"internal error")
    finally:
        hub.release_address(group)
    return ws


# What ends `async for msg in ws` (aiohttp's __anext__), without its coroutine on every socket.
_ENDED = frozenset((WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED))


async def _tab_closed(services: Services, hub: Hub, site: Site, tab: Tab) -> None:
    hub.remove(tab)
    with contextlib.suppress(Exception):
        changed = await asyncio.shield(
            services.visitors.tab_closed(site, tab.visitor_id, tab.tab_id, services.clock())
        )
        await hub.refresh(changed)
    log.debug("visitor %s tab %s closed", tab.visitor_id, tab.tab_id)


async def _refuse(ws: web.WebSocketResponse, code: int, message: str) -> None:
    with contextlib.suppress(Exception):
        await ws.send_json({"type": "error", "code": str(code), "message": message})
    await ws.close(code=code, message=message.encode()[:120])


async def _first_frame(ws: web.WebSocketResponse) -> WSMessage | None:
    """The first frame that is not a ping or pong, or None when none came within
    HELLO_TIMEOUT_S of the upgrade: one deadline for the whole wait, so pings cannot reset it."""
    try:
        async with asyncio.timeout(HELLO_TIMEOUT_S):
            while True:
                msg = await ws.receive()
                if msg.type not in (WSMsgType.PING, WSMsgType.PONG):
                    return msg
    except TimeoutError:
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class _Admitted:
    site: Site
    welcome: Welcome
    started: float  # the hello's arrival (monotonic), for /metrics
    returning: bool  # the hello named the visitor it got


async def _admit(
    request: web.Request, ws: web.WebSocketResponse, services: Services, address: str
) -> _Admitted | None:
    """Read and check the hello; the visitor's welcome, or None once refused."""
    msg = await _first_frame(ws)
    if msg is None:
        await _refuse(ws, 4408, "no hello in time")
        return None
    if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
        return None
    started = time.monotonic()  # hello -> number, for /metrics
    try:
        if msg.type is not WSMsgType.TEXT:
            raise Malformed("only JSON text frames are accepted")
        site_key, hello = parse_hello(
            parse_frame(msg.data), request.headers.get("User-Agent"), address
        )
    except Malformed as exc:
        await _refuse(ws, 4400, str(exc))
        return None
    site = await request.app[SITES].by_key(site_key)
    if site is None:
        await _refuse(ws, 4404, "unknown site")
        return None
    if not origin_allowed(request.headers.get("Origin"), site.domains):
        await _refuse(ws, 4403, "origin not allowed for this site")
        return None
    welcome = await services.visitors.hello(site, hello, services.clock())
    return _Admitted(site, welcome, started, hello.visitor_id == welcome.visitor_id)


async def _greet(
    ws: web.WebSocketResponse, services: Services, hub: Hub, tab: Tab, admitted: _Admitted
) -> None:
    site, welcome = admitted.site, admitted.welcome
    text = welcome_text(
        welcome.visitor_id, welcome.visit_id, site.settings.lease_on, site.settings.require_consent
    )
    # Nothing awaited since `hub.add(tab)`, so no push to this tab is under way: the welcome
    # and its first number leave in one write (web/wire.py), else one after the other.
    if not hub.greet(tab, text, welcome.shown):
        await ws.send_str(text)
        await hub.send(tab, welcome.shown)
    services.metrics.hello_done(time.monotonic() - admitted.started, admitted.returning)
    await hub.push(tab.visitor_id, welcome.shown)
    await hub.refresh(welcome.changed)

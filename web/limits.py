"""Limits on the HTTP server's connections, so idle, dripping or crowding clients cannot use up
the process's descriptors and keep others out (aiohttp has no such knobs of its own).

Rules kept here:
- At most `max_connections` connections are open at once; by default three quarters of the
  open-file limit (at most 10,000), so the database, AMI, FastAGI and recordings keep
  descriptors and `accept` never fails for lack of them.
- At most `max_per_address` connections from one address (an IPv6 address counts with its /64):
  `CALLTRACKING_WS_MAX_PER_ADDRESS` sockets plus `PAGE_MARGIN` for pages and API calls beside
  them. Trusted proxies are exempt (every client arrives through them); the websocket layer
  caps their clients by `X-Forwarded-For` after the upgrade.
- A connection over a limit gets a bare `503` and is closed before aiohttp sees it.
- A request head must be complete within `header_timeout_s` of the connection, or of the last
  response on a kept-alive connection: aiohttp starts its keep-alive timer at connect time and
  closes a connection still waiting for a whole head when it fires, so the timer is that limit.
- A request body must arrive within `body_timeout_s` of the start of its handling, else 408.
- Refusals and accept errors ("Too many open files") are logged at most once a minute per
  kind, with the number held back, so a flood cannot flood the log as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import resource
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from calltracking.config import Config
from calltracking.core.netpolicy import parse_address
from calltracking.core.throttle import LogThrottle

log = logging.getLogger(__name__)
PAGE_MARGIN = 16
MAX_AUTO_CONNECTIONS = 10_000
LOG_INTERVAL_S = 60.0
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n"
    b"Connection: close\r\n\r\ntoo many connections\n"
)
ACCEPT_ERROR = "socket.accept() out of system resource"


@dataclass(frozen=True, slots=True)
class HttpLimits:
    header_timeout_s: float
    body_timeout_s: float
    max_connections: int
    max_per_address: int
    trusted: frozenset[str] = frozenset()


def http_limits(config: Config) -> HttpLimits:
    return HttpLimits(
        header_timeout_s=config.http_header_timeout_s,
        body_timeout_s=config.http_body_timeout_s,
        max_connections=config.http_max_connections or _auto_max_connections(),
        max_per_address=config.ws_max_per_address + PAGE_MARGIN,
        trusted=frozenset(config.trusted_proxies),
    )


def _auto_max_connections() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_AUTO_CONNECTIONS
    return max(16, min(MAX_AUTO_CONNECTIONS, soft * 3 // 4))


@functools.lru_cache(maxsize=4096)  # behind a proxy, every connection comes from a few peers
def address_key(host: str) -> str:
    """The unit a per-address cap counts: the address, or its /64 for IPv6."""
    address = parse_address(host)
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address) if address is not None else host


class ConnectionGate:
    """Counts open connections, in all and per address; says why one is refused."""

    def __init__(self, limits: HttpLimits, clock: Callable[[], float]) -> None:
        self.limits = limits
        self.open = 0
        self.refused = 0
        self._per_address: Counter[str] = Counter()
        self._clock = clock
        self._throttle = LogThrottle(LOG_INTERVAL_S)

    def admit(self, host: str) -> str | None:
        """The key to `release` later, or None when the connection is refused (and logged)."""
        key = address_key(host)
        if key == host:
            key = host  # the connection holds the key until it closes: one string, not two
        if self.open >= self.limits.max_connections:
            self._refuse("total", host, f"{self.open} connections are open")
            return None
        if host not in self.limits.trusted and (
            self._per_address[key] >= self.limits.max_per_address
        ):
            self._refuse("address", host, f"{self._per_address[key]} connections from {key}")
            return None
        self.open += 1
        self._per_address[key] += 1
        return key

    def release(self, key: str) -> None:
        self.open -= 1
        self._per_address[key] -= 1
        if self._per_address[key] <= 0:
            del self._per_address[key]

    def _refuse(self, kind: str, host: str, why: str) -> None:
        self.refused += 1
        held = self._throttle.admit(kind, self._clock())
        if held is not None:
            log.warning(
                "web: connection from %s refused, %s (%d more refused since the last such line;"
                " the next in %g s at the earliest)",
                host,
                why,
                held,
                LOG_INTERVAL_S,
            )


class GatedProtocol(asyncio.Protocol):
    """Stands before aiohttp's protocol: admits the connection or answers 503 and closes it."""

    __slots__ = ("_gate", "_inner", "_key", "_make_inner")  # one per open connection

    def __init__(self, gate: ConnectionGate, inner: Callable[[], asyncio.Protocol]) -> None:
        self._gate = gate
        self._make_inner = inner
        self._inner: asyncio.Protocol | None = None
        self._key: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        self._key = self._gate.admit(host)
        if self._key is None:
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(REFUSAL)
            transport.close()
            return
        self._inner = self._make_inner()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._key is not None:
            self._gate.release(self._key)
            self._key = None
        if self._inner is not None:
            self._inner.connection_lost(exc)


# After a restart every open tab reconnects at once; with aiohttp's default of 128 pending
# connections the kernel dropped the rest of the SYNs, and their retries (1 s, 3 s, 7 s later)
# made a 10,000-tab storm last 15 s for 6 s of work. The kernel caps this at net.core.somaxconn.
LISTEN_BACKLOG = 4096


class LimitedSite(web.TCPSite):
    """`web.TCPSite` whose connections pass through a `ConnectionGate` first."""

    def __init__(self, runner: web.AppRunner, limits: HttpLimits, host: str, port: int) -> None:
        super().__init__(runner, host, port, backlog=LISTEN_BACKLOG)
        self.gate = ConnectionGate(limits, asyncio.get_running_loop().time)

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site; TCPSite.start would bind ungated
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: GatedProtocol(self.gate, server),
            self._host,
            self._port,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
            backlog=self._backlog,
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port


def body_deadline(timeout_s: float) -> Middleware:
    """Middleware: a request's body is read whole within `timeout_s`, else 408."""

    @web.middleware
    def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> Awaitable[web.StreamResponse]:
        # Not a coroutine itself: a request without a body (every websocket) keeps no frame of
        # ours for its whole life (memory per held socket).
        if not request.body_exists:
            return handler(request)
        return within_deadline(request, handler)

    async def within_deadline(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        # The handler reads the body itself (with its own size limit); the deadline is lifted
        # as soon as the whole body is in, so only a body that stalls is cut short.
        try:
            async with asyncio.timeout(timeout_s) as deadline:
                request.content.on_eof(lambda: _lift(deadline))
                return await handler(request)
        except TimeoutError:
            if not deadline.expired():
                raise  # the handler's own timeout, not this one
            log.info(
                "web: %s %s: body not received in %g s", request.method, _path(request), timeout_s
            )
            raise web.HTTPRequestTimeout(text="request body not received in time") from None

    return middleware


def _lift(deadline: asyncio.Timeout) -> None:
    with contextlib.suppress(RuntimeError):  # the request already finished
        deadline.reschedule(None)


def _path(request: web.Request) -> str:
    # The raw path, cut: a decoded one could carry line breaks into the log.
    return request.raw_path.split("?", 1)[0][:80]


def guard_accept_errors(loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """Log asyncio's accept errors at most once a minute; returns the undo."""
    previous = loop.get_exception_handler()
    throttle = LogThrottle(LOG_INTERVAL_S)

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if str(context.get("message", "")).startswith(ACCEPT_ERROR):
            held = throttle.admit("accept", loop.time())
            if held is not None:
                log.error(
                    "web: cannot accept connections: %s (%d more such errors held back)",
                    context.get("exception"),
                    held,
                )
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    return lambda: loop.set_exception_handler(previous)

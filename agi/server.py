"""The FastAGI service `agi://HOST:4573/calltracking`: accept, read the header, run the dialogue.

Rules:
- Every connection gets one budget (`budget_s`, 500 ms by the contract) from the moment it is
  accepted; the header must arrive within it, less a reserve kept for telling the dialplan
  about a failure. A peer that closes early, never sends the blank line or sends more than
  `header_limit` bytes without one is dropped with one log line; the loop never waits on it.
- Only the script `calltracking` is served (its query string aside); another is refused: logged
  and closed without a command, so the dialplan, seeing no `CALLTRACKING_KIND`, takes its
  default route.
- Each connection is an `AgiConnection` (connection.py) with a task of its own for its
  dialogue; the server keeps the tasks in a set and `stop()` cancels and awaits them, so none
  outlives the service.
- A peer outside `allow` (CALLTRACKING_AGI_ALLOW; empty allows any) is closed at once, before a
  byte is read, and counted as refused; such refusals are logged at most once a minute.
- While the event loop is late (guard.py: a tick more than `max_lag_s` late, by default the
  whole budget, which no session could keep then; after `WATCHDOG_REST_AFTER_S` without a
  session, the header's own wait in the kernel), a session is answered at once: its header
  is read and the socket closed without a command, so the dialplan, seeing no
  `CALLTRACKING_KIND`, takes its default route instead of waiting on a process that cannot
  keep the budget.
- `health` is true while the socket listens; `counters()` counts connections by `Outcome` for
  /metrics.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from agi.channel import AgiChannel, HeaderTooLarge, describe, read_env
from agi.connection import KERNEL_WAIT_READABLE, AgiConnection
from agi.facts import SCRIPT_NAME, script_name
from agi.guard import LoopWatchdog
from agi.handler import CallTrackingHandler, Outcome
from agi.protocol import PeerClosed, ProtocolError
from calltracking.core.netpolicy import Network, allowed_peer
from calltracking.core.throttle import LogThrottle
from calltracking.ports import CallStarter

log = logging.getLogger(__name__)

# Asterisk's block is under 1 KiB; 16 KiB leaves room for long AGI arguments and no more.
DEFAULT_HEADER_LIMIT = 16 * 1024
# Part of the budget kept back for setting the error variables after a failure.
MAX_RESERVE_S = 0.1
# A quiet spell after which the loop watchdog stops ticking (guard.py): an idle tracker sleeps.
WATCHDOG_REST_AFTER_S = 2.0


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AgiServer:
    """FastAGI over TCP for one Asterisk (`pbx_id`), resolving calls through `recorder`."""

    def __init__(
        self,
        recorder: CallStarter,
        pbx_id: str,
        country_code: str,
        host: str,
        port: int,
        budget_s: float = 0.5,
        *,
        clock: Callable[[], datetime] = _utc_now,
        header_limit: int = DEFAULT_HEADER_LIMIT,
        allow: tuple[Network, ...] = (),
        max_lag_s: float | None = None,
    ) -> None:
        if budget_s <= 0:
            raise ValueError("budget_s must be positive")
        self._handler = CallTrackingHandler(recorder, pbx_id, country_code, clock)
        self._host = host
        self._port = port
        self._budget_s = budget_s
        self._reserve_s = min(MAX_RESERVE_S, budget_s / 5)
        self._header_limit = header_limit
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._counts: Counter[Outcome] = Counter()
        self._allow = allow
        self._refusals = LogThrottle(60.0)
        # Seconds of each connection from accept to close; serve.py points it at /metrics.
        self.observe_dialogue: Callable[[float], None] = lambda seconds: None
        self.watchdog = LoopWatchdog(
            budget_s if max_lag_s is None else max_lag_s,
            rest_after_s=WATCHDOG_REST_AFTER_S if KERNEL_WAIT_READABLE else None,
        )

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("AgiServer already started")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: AgiConnection(self._header_limit, self._on_connect), self._host, self._port
        )
        self.watchdog.start()
        log.info("FastAGI listening on %s:%d", self._host, self.port)

    async def stop(self, grace_s: float = 0.0) -> None:
        """Stop listening, give the dialogues in progress `grace_s` to finish, cancel the rest
        and wait for them."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        if self._tasks and grace_s > 0:
            await asyncio.wait(list(self._tasks), timeout=grace_s)
        await self.watchdog.stop()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        # The tasks were cancelled here on purpose; their CancelledErrors end with them.
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
        log.info("FastAGI stopped")

    @property
    def port(self) -> int:
        """The bound port (the real one when 0 was asked for)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def health(self) -> bool:
        """True while the service accepts connections."""
        return self._server is not None and self._server.is_serving()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def counters(self) -> dict[str, int]:
        """Connections so far by outcome, every outcome present (zero included)."""
        return {outcome.value: self._counts[outcome] for outcome in Outcome}

    def _on_connect(self, connection: AgiConnection) -> None:
        """A new connection (AgiConnection.connection_made): refused at once, before a byte is
        read, or given a task of its own that the server keeps until it ends."""
        if not self._peer_allowed(connection):
            self._counts[Outcome.REFUSED] += 1
            self.observe_dialogue(0.0)
            connection.close()
            return
        task = asyncio.get_running_loop().create_task(self._run(connection))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, connection: AgiConnection) -> None:
        started = asyncio.get_running_loop().time()
        try:
            try:
                outcome = await self._serve(connection, started)
            except Exception:
                # The dialogue has its own boundary; this catches faults of the server code itself.
                log.exception("FastAGI connection from %s failed", _peer(connection))
                outcome = Outcome.ERROR
            # Counted before the close, so whoever sees the socket close sees the count too.
            self._counts[outcome] += 1
            self.observe_dialogue(asyncio.get_running_loop().time() - started)
            connection.close()
            await connection.wait_closed()
        finally:
            connection.close()

    async def _serve(self, connection: AgiConnection, started: float) -> Outcome:
        deadline = started + self._budget_s
        try:
            async with asyncio.timeout_at(deadline - self._reserve_s):
                env = await read_env(connection)
        except TimeoutError:
            log.info("FastAGI peer %s sent no complete header in time; closed", _peer(connection))
            return Outcome.HEADER_TIMEOUT
        except PeerClosed as exc:
            log.info("FastAGI peer %s closed during the header (%s)", _peer(connection), exc)
            return Outcome.HEADER_CLOSED
        except HeaderTooLarge as exc:
            log.warning(
                "FastAGI peer %s sent an oversized header (%s); closed", _peer(connection), exc
            )
            return Outcome.HEADER_TOO_LARGE
        except ProtocolError as exc:
            log.warning("FastAGI peer %s sent no AGI header (%s); closed", _peer(connection), exc)
            return Outcome.BAD_HEADER
        script = script_name(env)
        if script != SCRIPT_NAME:
            log.warning(
                "FastAGI script %r refused, %s from %s",
                script[:60],
                describe(env),
                _peer(connection),
            )
            return Outcome.REFUSED
        if not self.watchdog.healthy(connection.since_data_s):
            log.warning("FastAGI: loop late; %s answered at once, unattributed", describe(env))
            return Outcome.OVERLOADED
        return await self._handler.handle(AgiChannel(connection), env, deadline, self._reserve_s)

    def _peer_allowed(self, connection: AgiConnection) -> bool:
        if not self._allow:
            return True  # empty allows any (allowed_peer's rule), without reading the address
        peername = connection.peername()
        host = str(peername[0]) if isinstance(peername, tuple) and peername else ""
        if allowed_peer(host, self._allow):
            return True
        held = self._refusals.admit("peer", asyncio.get_running_loop().time())
        if held is not None:
            log.warning(
                "FastAGI peer %s is not in CALLTRACKING_AGI_ALLOW; closed (%d more refused since"
                " the last such line)",
                host,
                held,
            )
        return False


def _peer(connection: AgiConnection) -> str:
    peername = connection.peername()
    if isinstance(peername, tuple) and len(peername) >= 2:
        return f"{peername[0]}:{peername[1]}"
    return str(peername)

"""The AMI listener's connection supervisor: one session at a time, from connect to loss, then
a reconnect after a back-off; its health.

Rules:
- The panoramisk Manager is built inside the running loop, one per session (connection.py).
- Reconnect: exponential back-off with jitter (backoff.py), reset after each successful login;
  panoramisk's own fixed-interval reconnect is switched off. A refused login is logged and retried
  the same way (the secret may be fixed on the PBX meanwhile).
- After each login, and every `reconcile_interval_s` while connected, the session is reconciled
  (reconcile.py). A Ping without reply within `action_timeout_s` drops the connection.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ami_listener.backoff import Backoff
from ami_listener.connection import ActionFailed, AmiSession, LoginFailed
from ami_listener.timings import Timings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ListenerHealth:
    connected: bool
    logged_in: bool
    last_error: str | None
    sessions: int  # successful logins so far

    @property
    def ok(self) -> bool:
        return self.logged_in


class ConnectionSupervisor:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str,
        secret: str,
        events: str,
        timings: Timings,
        on_event: Callable[[dict[str, str]], None],
        reconcile: Callable[[AmiSession], Awaitable[None]],
        session_ended: Callable[[], None],
        rng: random.Random | None = None,
    ) -> None:
        self._host, self._port, self._username, self._secret = host, port, username, secret
        self._events = events
        self._t = timings
        self._on_event = on_event
        self._reconcile = reconcile
        self._session_ended = session_ended  # after `session` is cleared, before it closes
        self._backoff = Backoff(timings.backoff_initial_s, timings.backoff_max_s, rng=rng)
        self.session: AmiSession | None = None
        self._connected = False
        self._logged_in = False
        self._last_error: str | None = None
        self._sessions = 0

    @property
    def health(self) -> ListenerHealth:
        return ListenerHealth(self._connected, self._logged_in, self._last_error, self._sessions)

    async def run(self) -> None:
        """Connect, serve, reconnect, until cancelled."""
        while True:
            logged_in = False
            try:
                logged_in = await self._serve_session()
            except LoginFailed as exc:
                self._last_error = f"login refused: {exc}"
                log.error(
                    "AMI %s:%d: login as %r refused: %s",
                    self._host,
                    self._port,
                    self._username,
                    exc,
                )
            except (OSError, TimeoutError, ActionFailed) as exc:
                self._last_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "AMI %s:%d: connection failed: %s", self._host, self._port, self._last_error
                )
            finally:
                self._connected = self._logged_in = False
            if logged_in:
                self._backoff.reset()
            delay = self._backoff.next_delay()
            log.info("AMI %s:%d: reconnecting in %.1f s", self._host, self._port, delay)
            await asyncio.sleep(delay)

    async def _serve_session(self) -> bool:
        """One connection from connect to loss; True when it got logged in."""
        session = await AmiSession.open(
            host=self._host,
            port=self._port,
            username=self._username,
            secret=self._secret,
            events=self._events,
            on_event=self._on_event,
            connect_timeout=self._t.connect_timeout_s,
            login_timeout=self._t.login_timeout_s,
        )
        self.session, self._connected, self._logged_in = session, True, True
        self._sessions += 1
        self._last_error = None
        log.info("AMI %s:%d: logged in as %r", self._host, self._port, self._username)
        loop = asyncio.get_running_loop()
        try:
            await self._reconcile(session)
            next_reconcile = loop.time() + self._t.reconcile_interval_s
            while True:
                done, _ = await asyncio.wait({session.lost}, timeout=self._t.ping_interval_s)
                if done:
                    log.warning("AMI %s:%d: connection lost", self._host, self._port)
                    return True
                await session.action({"Action": "Ping"}, self._t.action_timeout_s)
                if loop.time() >= next_reconcile:
                    await self._reconcile(session)
                    next_reconcile = loop.time() + self._t.reconcile_interval_s
        except (OSError, TimeoutError) as exc:
            self._last_error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "AMI %s:%d: dropping the connection: %s", self._host, self._port, self._last_error
            )
            return True
        finally:
            self.session = None
            self._session_ended()
            session.close()

"""One AMI session on panoramisk 1.4: connect, log in, send actions, notice the loss.

What panoramisk 1.4 does on Python 3.11 (read from its source and checked by tests/ami):
- `Manager.connect()` returns when TCP is up, not when the login succeeded, and its reconnect is a
  fixed `reconnect_timeout` loop (`call_later` in `connection_lost`) with no back-off. We never call
  `connect()`: we open the TCP connection ourselves (with a timeout), hand it to
  `Manager.connection_made`, which sends `Login`, and wait for the login reply. `connection_lost` is
  overridden to resolve `lost` instead of scheduling panoramisk's reconnect; the listener reconnects
  with back-off (backoff.py). A failed login (`Response: Error`) only sets `authenticated = False`
  in panoramisk (no callback) and Asterisk then closes the socket: we raise `LoginFailed`.
- Its pinger sends `Ping` and never checks the reply, so a half-open link goes unnoticed: `ping` is
  a no-op here and the listener pings with a timeout itself.
- It registers `send_awaiting_actions` (an `async def`) on FullyBooted, run as an untracked task,
  re-sending a lost session's actions to the next one: dropped; each session is a fresh Manager.
- Event patterns are case-sensitive fnmatch; we register `*` and keep the callback synchronous
  (async callbacks become untracked tasks that finish out of order).
- Its parser builds a case-insensitive `Message` per event and its dispatch matches patterns:
  most of the listener's time per event. Plain events (no ActionID, not a response) are split
  into headers here (`_Protocol`) and go to the callback directly; replies to actions, their
  list events and Shutdown still go through panoramisk.
- `Action()` creates `asyncio.Future()` without a loop, so actions are only built inside the loop;
  `Message` is a case-insensitive dict with an extra `content` key and lists for repeated headers.
- Replies to actions (matched by ActionID, also the events of a list such as CoreShowChannel) go to
  the action's future, never to event callbacks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from calltracking.core.callflow.headers import parse_block

log = logging.getLogger(__name__)


class LoginFailed(Exception):
    """Asterisk refused the username/secret (or their rights)."""


class ActionFailed(Exception):
    """Asterisk answered an action with an error."""


EventCallback = Callable[[dict[str, str]], None]


def as_dict(message: Mapping[str, Any]) -> dict[str, str]:
    """A panoramisk Message as plain headers (first of a repeated header; no `content`)."""
    out: dict[str, str] = {}
    for key, value in message.items():
        if key.lower() == "content":
            continue
        if isinstance(value, list):
            value = value[0] if value else ""
        out[str(key)] = str(value)
    return out


class _Protocol(AMIProtocol):  # type: ignore[misc]
    """panoramisk's protocol, with events read here: a block that is neither a response nor part
    of an action's reply (no ActionID) is split into headers with no intermediate object and
    handed to the event callback; everything else, and Shutdown, goes through panoramisk."""

    def data_received(self, data: bytes) -> None:
        if self.version is None or len(self.queue) != 1:
            try:  # the banner, or a state we did not expect
                super().data_received(data)
            except Exception:  # a broken block must not close the session (asyncio would)
                log.warning("AMI data panoramisk could not parse dropped", exc_info=True)
            return
        text = self.queue.pop() + data.decode(getattr(self, "encoding", "ascii"), "ignore")
        *blocks, rest = text.split("\r\n\r\n")
        self.queue.append(rest)
        on_event: EventCallback = self.factory.on_event
        for raw in blocks:
            block = raw.strip()
            if block.startswith("Response") or "ActionID" in block:
                message = Message.from_line(block)
                if message is not None:
                    self.handle_message(message)
                continue
            headers = parse_block(block)
            name = headers.get("Event")
            if name is None:
                name = next((v for k, v in headers.items() if k.lower() == "event"), None)
                if name is None:
                    continue  # not an event: panoramisk drops it too
            if name.lower() == "shutdown":
                self.handle_message(Message.from_line(block))
                continue
            on_event(headers)

    def handle_message(self, message: Any) -> None:
        # A header given twice comes out of panoramisk as a list, and its `handle_message` then
        # fails on `.lower()` inside `data_received`, which closes the socket: drop the block.
        if any(isinstance(message.get(name), list) for name in ("Event", "Response", "ActionID")):
            log.warning("AMI block with a repeated Event/Response/ActionID header dropped")
            return
        super().handle_message(message)


class _Manager(Manager):  # type: ignore[misc]
    """panoramisk's Manager without its reconnect loop, pinger or replay of a lost session."""

    def __init__(self, lost: asyncio.Future[None], on_event: EventCallback, **config: Any) -> None:
        super().__init__(**config)
        self.on_event = on_event
        self.callbacks.clear()
        self.patterns.clear()
        self._lost = lost

    def ping(self) -> None:
        """Replaced by the listener's checked keep-alive."""

    def connection_lost(self, exc: object) -> None:
        self._connected = False
        pinger: asyncio.TimerHandle | None = getattr(self, "pinger", None)
        if pinger is not None:
            pinger.cancel()
        self.pinger = None
        if not self._lost.done():
            self._lost.set_result(None)


class AmiSession:
    """A logged-in AMI connection; `lost` resolves when it is gone."""

    def __init__(self, manager: _Manager, lost: asyncio.Future[None]) -> None:
        self._manager = manager
        self.lost = lost

    @classmethod
    async def open(
        cls,
        *,
        host: str,
        port: int,
        username: str,
        secret: str,
        events: str,
        on_event: EventCallback,
        connect_timeout: float,
        login_timeout: float,
    ) -> AmiSession:
        loop = asyncio.get_running_loop()
        lost: asyncio.Future[None] = loop.create_future()
        manager = _Manager(
            lost,
            on_event,
            loop=loop,
            host=host,
            port=port,
            username=username,
            secret=secret,
            events=events,
            ping_delay=3600,
            ping_interval=3600,
        )
        manager.register_event("*", lambda _m, message: on_event(as_dict(message)))
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can drop a stop's cancellation
        # that meets a refused connection, and the reconnect loop would never end.
        async with asyncio.timeout(connect_timeout):
            transport, protocol = await loop.create_connection(_Protocol, host, port)
        made: asyncio.Future[tuple[Any, Any]] = loop.create_future()
        made.set_result((transport, protocol))
        manager.connection_made(made)  # sends Login
        session = cls(manager, lost)
        auth = manager.authenticated_future
        try:
            await asyncio.wait(
                {auth, lost}, timeout=login_timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if not auth.done():
                raise ConnectionError("no reply to Login") if lost.done() else TimeoutError("Login")
            reply = auth.result()
            if not reply.success:
                raise LoginFailed(str(reply.get("Message", "refused")))
        except BaseException:
            session.close()
            raise
        return session

    @property
    def transport(self) -> asyncio.Transport | None:
        protocol = self._manager.protocol
        return getattr(protocol, "transport", None)

    async def action(self, action: dict[str, str], wait_s: float) -> list[dict[str, str]]:
        """Send an action; its reply messages (a list action gives all its events)."""
        if self.lost.done():
            raise ConnectionError("AMI connection lost")
        future = self._manager.send_action(action)
        await asyncio.wait({future, self.lost}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
        if not future.done():
            future.cancel()  # so panoramisk never completes or re-sends it
            if self.lost.done():
                raise ConnectionError("AMI connection lost")
            raise TimeoutError(f"no reply to {action.get('Action')}")
        result = future.result()
        replies = [as_dict(m) for m in (result if isinstance(result, list) else [result])]
        first = replies[0] if replies else {}
        if first.get("Response", "").lower() in ("error", "fail", "failure"):
            raise ActionFailed(first.get("Message", "error"))
        return replies

    def close(self) -> None:
        self._manager.close()
        if not self.lost.done():
            self.lost.set_result(None)

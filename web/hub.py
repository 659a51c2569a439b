"""This node's open visitor tabs, and pushing each visitor's number to every one of them.

Rules:
- a tab is sent a `number` frame only when what it shows changes (repeats are suppressed);
- sends are bounded in time so one slow client cannot stall the others; a tab that cannot be
  written to is closed;
- changes decided on other nodes arrive as bus events (`lease.*`, `pool.*`) and make this node
  recompute the visitor's number from the database (`refresh`);
- sends to one tab happen one at a time, in order; the lock that orders them exists only while
  a send is under way (memory per held tab is what limits a node: bench/ws_bench.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web

from calltracking.core.events import Event, EventKey
from calltracking.core.kinds import DisplayKind
from calltracking.store.deciders import DeciderService
from calltracking.store.visitors import Shown
from web.outgoing import number_text
from web.wire import write_texts

log = logging.getLogger(__name__)
SEND_TIMEOUT_S = 5.0
SUMMARY_EVERY_S = 60.0
CLOSE_SITE_DELETED = 4410


@dataclass(eq=False, slots=True)
class Tab:
    ws: web.WebSocketResponse
    site_id: str
    visitor_id: str
    tab_id: str
    address: str
    shown: Shown | None = None


class _Sending:
    """The lock ordering one tab's sends, and how many sends hold or wait for it."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class Hub:
    def __init__(
        self,
        visitors: DeciderService,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.visitors = visitors
        self.clock = clock
        self._monotonic = monotonic
        # A tuple per visitor: most have one tab, and a tuple is the smallest container.
        self._by_visitor: dict[str, tuple[Tab, ...]] = {}
        self._per_address: Counter[str] = Counter()
        self._sending: dict[Tab, _Sending] = {}
        self.pushed = 0
        self.opened = self.closed = 0  # since the last summary line
        self._summary_at = monotonic()

    def __len__(self) -> int:
        return sum(len(tabs) for tabs in self._by_visitor.values())

    def connections_from(self, address: str) -> int:
        return self._per_address[address]

    def reserve_address(self, address: str) -> None:
        self._per_address[address] += 1

    def release_address(self, address: str) -> None:
        self._per_address[address] -= 1
        if self._per_address[address] <= 0:
            del self._per_address[address]

    def add(self, tab: Tab) -> None:
        tabs = self._by_visitor.get(tab.visitor_id, ())
        if tab not in tabs:
            self._by_visitor[tab.visitor_id] = (*tabs, tab)
            self.opened += 1
            self._summarise()

    def remove(self, tab: Tab) -> None:
        tabs = self._by_visitor.get(tab.visitor_id)
        if tabs is not None:
            rest = tuple(other for other in tabs if other is not tab)
            if rest:
                self._by_visitor[tab.visitor_id] = rest
            else:
                del self._by_visitor[tab.visitor_id]
            self.closed += 1
            self._summarise()

    def _summarise(self) -> None:
        """One line a minute while tabs come and go (none while nothing happens)."""
        now = self._monotonic()
        if now - self._summary_at < SUMMARY_EVERY_S:
            return
        log.info(
            "visitor tabs: %d open, %d visitors; %d opened and %d closed in the last %.0f s",
            len(self),
            len(self._by_visitor),
            self.opened,
            self.closed,
            now - self._summary_at,
        )
        self.opened = self.closed = 0
        self._summary_at = now

    def tab_ids(self) -> list[str]:
        return [tab.tab_id for tabs in self._by_visitor.values() for tab in tabs]

    def has(self, visitor_id: str) -> bool:
        return visitor_id in self._by_visitor

    def greet(self, tab: Tab, welcome: str, shown: Shown) -> bool:
        """A new tab's welcome and first number in one write (web/wire.py), before anything
        else was sent to it and with nothing awaited since `add`; False, with nothing sent, when
        that is not possible (the caller then sends them as usual)."""
        if tab.shown is not None or tab in self._sending:
            return False
        if not write_texts(tab.ws, welcome, number_text(shown)):
            return False
        tab.shown = shown
        self.pushed += 1
        return True

    async def send(self, tab: Tab, shown: Shown) -> None:
        sending = self._sending.get(tab)
        if sending is None:
            sending = self._sending[tab] = _Sending()
        sending.users += 1
        try:
            async with sending.lock:
                await self._send(tab, shown)
        finally:
            sending.users -= 1
            if not sending.users:
                del self._sending[tab]

    async def _send(self, tab: Tab, shown: Shown) -> None:
        if tab.shown == shown or tab.ws.closed:
            return
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S):  # no task per send, as wait_for makes
                await tab.ws.send_json(shown.frame())
            tab.shown = shown
            self.pushed += 1
        except (TimeoutError, ConnectionError, RuntimeError) as exc:
            log.info("visitor %s tab %s unwritable (%s); closing", tab.visitor_id, tab.tab_id, exc)
            with contextlib.suppress(Exception):
                await tab.ws.close()

    async def push(self, visitor_id: str, shown: Shown) -> None:
        # A tab already showing it with no send under way needs nothing (a send under way may
        # be about to show something else, so that tab waits its turn as usual).
        tabs = [
            tab
            for tab in self._by_visitor.get(visitor_id, ())
            if tab.shown != shown or tab in self._sending
        ]
        if len(tabs) == 1:
            await self.send(tabs[0], shown)
        elif tabs:
            await asyncio.gather(*(self.send(tab, shown) for tab in tabs))

    async def refresh(self, visitor_ids: Iterable[str]) -> None:
        """Recompute and push the number of each visitor that has tabs on this node."""
        for visitor_id in set(visitor_ids):
            if not self.has(visitor_id):
                continue
            try:
                shown = await self.visitors.current(visitor_id, self.clock())
            except Exception:
                log.exception("visitor %s: cannot recompute the number", visitor_id)
                continue
            if shown is None:
                await self.close_visitor(visitor_id, CLOSE_SITE_DELETED, "site deleted")
            else:
                await self.push(visitor_id, shown)

    async def close_visitor(self, visitor_id: str, code: int, message: str) -> None:
        for tab in list(self._by_visitor.get(visitor_id, ())):
            with contextlib.suppress(Exception):
                await tab.ws.close(code=code, message=message.encode())

    async def close_site(self, site_id: str) -> None:
        tabs = [tab for tabs in self._by_visitor.values() for tab in tabs if tab.site_id == site_id]
        await asyncio.gather(
            *(tab.ws.close(code=CLOSE_SITE_DELETED, message=b"site deleted") for tab in tabs),
            return_exceptions=True,
        )

    async def close_all(self) -> None:
        tabs = [tab for tabs in self._by_visitor.values() for tab in tabs]
        await asyncio.gather(
            # 1012 "service restart": the snippet reconnects with back-off, to another node.
            *(tab.ws.close(code=1012, message=b"service restart") for tab in tabs),
            return_exceptions=True,
        )

    async def on_event(self, event: Event) -> None:
        """Bus handler: a lease or pool change somewhere; refresh the visitor if it is here and
        its tabs do not already show the change (this node's own changes come back this way)."""
        if self.wants(event):
            await self.refresh([str(event.data["visitor"])])

    def wants(self, event: Event) -> bool:
        """Whether `on_event` would refresh a visitor for `event` (the bus asks first)."""
        visitor = event.data.get("visitor")
        return isinstance(visitor, str) and self.has(visitor) and not self._already_shown(event)

    def _already_shown(self, event: Event) -> bool:
        tabs = self._by_visitor.get(str(event.data.get("visitor")), ())
        shown = {tab.shown for tab in tabs}
        if len(shown) != 1 or None in shown:
            return False
        (current,) = shown
        assert current is not None
        number = event.data.get("number")
        if event.key == EventKey.LEASE_ASSIGNED:
            return current.kind is DisplayKind.DYNAMIC and current.e164 == number
        if event.key == EventKey.LEASE_RELEASED:
            return not (current.kind is DisplayKind.DYNAMIC and current.e164 == number)
        if event.key == EventKey.POOL_EXHAUSTED:
            return current.kind is DisplayKind.UNTRACKED
        return False

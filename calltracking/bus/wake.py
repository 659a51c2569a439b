"""Wake-ups instead of polling: background loops sleep until something happened or is due.

Rules:
- `Wake.notify()` sets the event of every sleeper subscribed to it; it is cheap, synchronous and
  may be called any number of times (many notifies before a sleeper runs are one wake-up).
- A sleeper clears its event *before* a round and sleeps *after* it, so a notify that lands
  during the round is never lost: the next sleep returns at once.
- Every sleep has a ceiling (the loop's fallback interval), so a lost signal delays work, it
  never loses it.
"""

from __future__ import annotations

import asyncio
import contextlib


class Wake:
    """One signal, many sleepers (the outbox relay, the exporters, the sweeper)."""

    def __init__(self) -> None:
        self._events: list[asyncio.Event] = []
        self.notified = 0

    def subscribe(self) -> asyncio.Event:
        event = asyncio.Event()
        self._events.append(event)
        return event

    def notify(self) -> None:
        self.notified += 1
        for event in self._events:
            event.set()


async def sleep_until(timeout_s: float | None, *events: asyncio.Event | None) -> None:
    """Sleep `timeout_s` at most (None: no limit); return early once any of `events` is set."""
    waiting = [event for event in events if event is not None]
    if any(event.is_set() for event in waiting):
        return
    if timeout_s is not None and timeout_s <= 0:
        return
    if not waiting:
        if timeout_s is not None:
            await asyncio.sleep(timeout_s)
        return
    tasks = [asyncio.ensure_future(event.wait()) for event in waiting]
    try:
        await asyncio.wait(tasks, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

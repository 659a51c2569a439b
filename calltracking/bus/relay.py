"""The outbox relay: publishes the events written with each change, at least once, in order.

Rules:
- Events are published in the outbox's order, one at a time, and only those the broker confirmed
  are marked published (once per round, in one call). The loop gets a turn every
  `YIELD_EVERY` events, whatever the bus. The first failure ends the round: the failed
  event and everything after it stay pending for the next round, so order is kept and nothing is
  marked that the broker may not have.
- A crash or cancellation between a confirm and the mark republishes those events later: consumers
  deduplicate on the event id (CONTRACT.md, "Event bus"), which is what makes this safe.
- `run` repeats `run_once` until `stop` is set; a full batch is followed at once by the next round,
  otherwise it sleeps until `wake` is set (outbox rows were committed: bus/wake.py) or `idle_s`
  passed, and keeps at least `interval_s` between the starts of two rounds (under load, rounds
  gather many events). So an idle relay costs nothing and the first event after a quiet spell
  leaves at once. A round that fails is retried next time; a publishing outage is logged once
  when it starts (then at debug level) and once when it ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from calltracking.bus.base import Bus
from calltracking.bus.wake import sleep_until
from calltracking.core.events import Event
from calltracking.quiet_log import QuietLog

log = logging.getLogger(__name__)
# Events published between two turns of the event loop: a round of hundreds of events in one
# step held it for 10-20 ms under load (bench.agi_bench, the in-process bus), and every
# FastAGI dialogue in flight waited.
YIELD_EVERY = 32


class Outbox(Protocol):
    async def fetch_pending(self, limit: int) -> list[Event]:
        """The oldest unpublished events, oldest first, at most `limit`."""
        ...

    async def mark_published(self, event_ids: Sequence[str]) -> None:
        """Mark these events published; marking one twice is harmless."""
        ...


class OutboxRelay:
    def __init__(self, outbox: Outbox, bus: Bus, batch: int = 100) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self._outbox = outbox
        self._bus = bus
        self._batch = batch
        self._failing = False
        self._rounds = QuietLog(log, "outbox relay round failed")

    async def run_once(self) -> int:
        """Publish one batch of pending events; return how many were confirmed and marked."""
        pending = await self._outbox.fetch_pending(self._batch)
        confirmed: list[str] = []
        for event in pending:
            try:
                await self._bus.publish(event)
            except Exception as exc:
                self._report_failure(event, len(pending) - len(confirmed), exc)
                break
            confirmed.append(event.id)
            if len(confirmed) % YIELD_EVERY == 0:
                # A bus that never waits (MemoryBus) would hold the loop for the whole round.
                await asyncio.sleep(0)
        else:
            if self._failing:
                log.info("outbox relay: publishing again")
            self._failing = False
        if confirmed:
            await self._outbox.mark_published(confirmed)
        return len(confirmed)

    def _report_failure(self, event: Event, left: int, exc: Exception) -> None:
        # One warning per outage, not one per round: a broker away for an hour is one story.
        level = logging.DEBUG if self._failing else logging.WARNING
        self._failing = True
        log.log(
            level,
            "outbox relay: event %s (%s) not published, %d of this batch left pending: %s",
            event.id,
            event.key,
            left,
            exc,
        )

    async def run(
        self,
        interval_s: float,
        stop: asyncio.Event,
        wake: asyncio.Event | None = None,
        idle_s: float | None = None,
    ) -> None:
        """Without `wake`, a round every `interval_s` (polling, as tests may want)."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            started = loop.time()
            if wake is not None:
                wake.clear()  # before the round: a commit during it wakes the next one
            published, failed = 0, False
            try:
                published = await self.run_once()
            except Exception as exc:
                # One line a minute while the database is away, not a traceback per round.
                self._rounds.failed(exc, asyncio.get_running_loop().time())
                failed = True
            else:
                self._rounds.recovered()
            if published >= self._batch:
                continue  # more may be waiting: no pause while there is a backlog
            if wake is not None and not (failed or self._failing):  # outages retry by interval
                await sleep_until(idle_s if idle_s is not None else interval_s, stop, wake)
            await sleep_until(interval_s - (loop.time() - started), stop)

"""The outbox relay: publishes the events written with each change, at least once, in order.

Rules:
- Events are sent in the outbox's order, and only those the broker confirmed are marked
  published (once per round, in one call). With `in_flight` 1 they go one at a time and the
  loop gets a turn every `YIELD_EVERY` events (the in-process bus, which never waits). With more
  (a broker), up to `in_flight` events are sent before their confirms are awaited: one event per
  confirm round trip capped a relay at ~600 events/s on RabbitMQ, below what one web node
  writes (bench.nodes_bench), and cost twice the CPU per event (docs/benchmarks.md). The
  sends still leave in order (aio-pika writes a channel's publishes in the order they are
  made). The first failure ends the round: the failed event and everything after it stay
  pending for the next round, even those of its window the broker confirmed, so nothing is
  marked that the broker may not have; those are sent again, which consumers absorb.
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
# FastAGI dialogue in flight waited. 32 a turn still made the dialogues that overlapped a
# 500-event round the slowest 1% (p99 37-39 ms against a p50 of 11); 8 a turn, 26-28 ms, for
# no measurable CPU.
YIELD_EVERY = 8

_Failure = tuple[Event, Exception]  # the first event not confirmed, and why


class Outbox(Protocol):
    async def fetch_pending(self, limit: int) -> list[Event]:
        """The oldest unpublished events, oldest first, at most `limit`."""
        ...

    async def mark_published(self, event_ids: Sequence[str]) -> None:
        """Mark these events published; marking one twice is harmless."""
        ...


class OutboxRelay:
    def __init__(self, outbox: Outbox, bus: Bus, batch: int = 100, in_flight: int = 1) -> None:
        if batch < 1 or in_flight < 1:
            raise ValueError("batch and in_flight must be at least 1")
        self._outbox = outbox
        self._bus = bus
        self._batch = batch
        self._in_flight = in_flight
        self._failing = False
        self._rounds = QuietLog(log, "outbox relay round failed")

    async def run_once(self) -> int:
        """Publish one batch of pending events; return how many were confirmed and marked."""
        pending = await self._outbox.fetch_pending(self._batch)
        if self._in_flight == 1:
            confirmed, failure = await self._one_at_a_time(pending)
        else:
            confirmed, failure = await self._windows(pending)
        if failure is not None:
            event, exc = failure
            self._report_failure(event, len(pending) - len(confirmed), exc)
        else:
            if self._failing:
                log.info("outbox relay: publishing again")
            self._failing = False
        if confirmed:
            await self._outbox.mark_published(confirmed)
        return len(confirmed)

    async def _one_at_a_time(self, pending: Sequence[Event]) -> tuple[list[str], _Failure | None]:
        confirmed: list[str] = []
        for event in pending:
            try:
                await self._bus.publish(event)
            except Exception as exc:
                return confirmed, (event, exc)
            confirmed.append(event.id)
            if len(confirmed) % YIELD_EVERY == 0:
                # A bus that never waits (MemoryBus) would hold the loop for the whole round.
                await asyncio.sleep(0)
        return confirmed, None

    async def _windows(self, pending: Sequence[Event]) -> tuple[list[str], _Failure | None]:
        confirmed: list[str] = []
        for start in range(0, len(pending), self._in_flight):
            window = pending[start : start + self._in_flight]
            outcomes = await asyncio.gather(
                *(self._bus.publish(event) for event in window), return_exceptions=True
            )
            for event, outcome in zip(window, outcomes, strict=True):
                if isinstance(outcome, Exception):
                    return confirmed, (event, outcome)
                if isinstance(outcome, BaseException):
                    raise outcome
                confirmed.append(event.id)
        return confirmed, None

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

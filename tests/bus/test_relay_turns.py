"""A relay round over a bus that never waits (MemoryBus) gives the event loop a turn every
`YIELD_EVERY` events, so a round of hundreds does not hold every other task; order and marks
stay those of one step."""

from __future__ import annotations

import asyncio

from calltracking.bus import MemoryBus, OutboxRelay
from calltracking.bus.relay import YIELD_EVERY
from tests.bus import MemoryOutbox, RecordingBus, make_event


async def test_a_long_round_lets_other_tasks_run_and_keeps_its_order() -> None:
    events = [make_event("call.started") for _ in range(5 * YIELD_EVERY + 3)]
    outbox = MemoryOutbox(events)
    bus = RecordingBus(MemoryBus())
    seen_during: list[int] = []

    async def other_task() -> None:
        while True:
            seen_during.append(len(bus.confirmed))
            await asyncio.sleep(0)

    ticker = asyncio.create_task(other_task())
    await asyncio.sleep(0)
    try:
        assert await OutboxRelay(outbox, bus, batch=len(events)).run_once() == len(events)
    finally:
        ticker.cancel()
    assert bus.confirmed == [e.id for e in events]
    assert outbox.published == [e.id for e in events]
    # The other task ran between slices of the round, never more than a slice apart.
    during = [n for n in seen_during if 0 < n < len(events)]
    assert during == [YIELD_EVERY * k for k in range(1, 6)]

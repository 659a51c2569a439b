"""`run_exporters`, as `calltracking serve` starts it: exports go out on their own, webhook
events are consumed from the bus, and cancellation stops it cleanly."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from calltracking.bus.memory import MemoryBus
from calltracking.config import Config
from calltracking.core.settings import Analytics, Ga4Target
from calltracking.services import Services
from calltracking.store.db import Database
from calltracking.workers import run_exporters
from tests.exporters.fake_ga4 import FakeGa4, running
from tests.workers.seed import CALL_AT, Clock, export_of, seed_tracked

NOW = CALL_AT + timedelta(minutes=5)


async def _sent(db: Database, call_id: str) -> bool:
    """Waits (a real loop runs here: nothing to drive by hand) until the export is recorded."""
    for _ in range(500):
        if (await export_of(db, call_id, "ga4")).state == "sent":
            return True
        await asyncio.sleep(0.02)
    return False


async def test_run_exporters_sends_due_exports_and_stops_on_cancel(sqlite_db: Database) -> None:
    clock = Clock(NOW)
    fake = FakeGa4(api_secret="s3cret-api", clock=clock)
    tracked = await seed_tracked(sqlite_db, Analytics(ga4=Ga4Target("G-TEST1234", "s3cret-api")))
    call_id = await tracked.call()
    bus = MemoryBus()
    async with running(fake) as endpoint:
        config = Config(
            database_url=sqlite_db.url, ga4_endpoint=endpoint, metrika_endpoint=endpoint
        )
        services = Services(config=config, db=sqlite_db, bus=bus, node_id="node-1", clock=clock)
        task = asyncio.create_task(run_exporters(services))
        try:
            assert await _sent(sqlite_db, call_id)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await bus.close()
    assert task.cancelled()
    assert len(fake.received) == 1

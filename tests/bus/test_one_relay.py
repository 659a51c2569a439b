"""Several processes on one PostgreSQL relay its outbox one at a time: each event leaves once,
not once per process, and when the relaying process stops another takes over."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from calltracking.bus.memory import MemoryBus
from calltracking.config import Config
from calltracking.serve import _flush_outbox, _relay
from calltracking.services import Services
from calltracking.store.db import Database
from calltracking.store.leadership import RELAY_JOB, Leadership
from calltracking.store.outbox import emit
from tests.bus import RecordingBus
from tests.integration.pbx import until
from tests.store.seed import T0
from tests.support.outbox import until_outbox_published

pytestmark = pytest.mark.postgres


@dataclass
class Relaying:
    services: Services
    bus: RecordingBus
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def end(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 10)


@contextlib.asynccontextmanager
async def relaying(db: Database, *, preferred: bool = True) -> AsyncIterator[Relaying]:
    bus = RecordingBus(MemoryBus())
    services = Services(config=Config(database_url=db.url), db=db, bus=bus, node_id="n")
    stop = asyncio.Event()
    task = asyncio.create_task(_relay(services, stop, preferred=preferred))
    try:
        yield Relaying(services, bus, stop, task)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        await bus.close()


async def emit_events(db: Database, count: int) -> set[str]:
    async with db.write() as conn:
        return {(await emit(conn, "test.relayed", {"n": n}, T0)).id for n in range(count)}


async def test_two_processes_publish_each_event_once_and_the_second_takes_over(
    pg_db: Database, pg_url: str
) -> None:
    other_db = Database(pg_url)
    try:
        async with relaying(pg_db) as first, relaying(other_db) as second:
            emitted = await emit_events(pg_db, 50)
            for process in (first, second):  # as PostgreSQL's NOTIFY wakes every process
                process.services.outbox_written()

            def published() -> list[str]:
                return [*first.bus.confirmed, *second.bus.confirmed]

            await until(lambda: set(published()) >= emitted)
            await asyncio.sleep(1.5)  # a standby's poll or two: it must stay out
            assert sorted(published()) == sorted(emitted)  # each once
            active, standby = (first, second) if first.bus.confirmed else (second, first)
            assert standby.bus.confirmed == []

            await active.end()  # its lock's connection closes with it
            later = await emit_events(other_db, 20)
            standby.services.outbox_written()
            await until(lambda: set(standby.bus.confirmed) >= later)
            assert sorted(published()) == sorted(emitted | later)
    finally:
        await other_db.close()


async def test_a_web_node_relays_only_while_no_process_with_the_workers_part_runs(
    pg_db: Database, pg_url: str
) -> None:
    """A web node (a fallback) relays alone, stands aside within seconds once a workers
    process (preferred) is up, and takes over again when that one stops; every event leaves."""
    workers_db = Database(pg_url)
    try:
        async with relaying(pg_db, preferred=False) as web:
            alone = await emit_events(pg_db, 5)
            web.services.outbox_written()
            await until(lambda: set(web.bus.confirmed) >= alone)

            async with relaying(workers_db) as workers:
                later: set[str] = set()

                def handed_over() -> bool:
                    # Events keep coming while the two hand over; the later ones leave by
                    # the workers process once the web node has stood aside.
                    return bool(later) and set(workers.bus.confirmed) >= later

                async with asyncio.timeout(20):
                    while not handed_over():
                        later = await emit_events(pg_db, 3)
                        for process in (web, workers):
                            process.services.outbox_written()
                        await asyncio.sleep(0.5)
                by_web = len(web.bus.confirmed)
                last = await emit_events(pg_db, 5)
                for process in (web, workers):
                    process.services.outbox_written()
                await until(lambda: set(workers.bus.confirmed) >= last)
                await asyncio.sleep(1.5)  # the web node's poll or two: it must stay out
                assert len(web.bus.confirmed) == by_web

            after = await emit_events(pg_db, 5)
            web.services.outbox_written()
            await until(lambda: set(web.bus.confirmed) >= after)
            assert {*web.bus.confirmed, *workers.bus.confirmed} >= alone | last | after
            await until_outbox_published(pg_db)
    finally:
        await workers_db.close()


async def test_a_stopping_process_flushes_only_when_no_other_process_relays(
    pg_db: Database, pg_url: str
) -> None:
    """The shutdown flush (serve._flush_outbox) takes the relay's lock for itself: while
    another process relays, it publishes nothing (that process does); alone, it publishes
    what is pending and frees the lock again."""
    other_db = Database(pg_url)
    stopping_bus = RecordingBus(MemoryBus())
    stopping = Services(
        config=Config(database_url=pg_db.url), db=pg_db, bus=stopping_bus, node_id="stopping"
    )
    try:
        async with relaying(other_db) as active:
            first = await emit_events(pg_db, 3)
            active.services.outbox_written()
            await until(lambda: set(active.bus.confirmed) >= first)  # it holds the lock
            emitted = await emit_events(pg_db, 10)  # nobody wakes it: they stay pending
            await _flush_outbox(stopping)
            assert stopping_bus.confirmed == []
            active.services.outbox_written()
            await until(lambda: set(active.bus.confirmed) >= emitted)
        # Nobody relays now: the flush publishes what is pending, and lets go of the lock.
        left = await emit_events(pg_db, 5)
        await _flush_outbox(stopping)
        assert sorted(stopping_bus.confirmed) == sorted(left)
        assert await Leadership(pg_url, RELAY_JOB, "test").run_if_free(_nothing)
    finally:
        await stopping_bus.close()
        await other_db.close()


async def _nothing() -> None:
    return None


async def test_a_process_stopping_while_it_holds_the_lock_does_not_report_it_lost(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    leadership = Leadership(pg_url, "test-stopping-holder", "stopping holder", poll_s=0.05)
    working = asyncio.Event()

    async def work() -> None:
        working.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(leadership.run(work))
    await asyncio.wait_for(working.wait(), 10)
    await asyncio.sleep(0.2)  # a few checks of the lock's connection pass
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert leadership.active is False
    assert not [r for r in caplog.records if "lost" in r.getMessage()]

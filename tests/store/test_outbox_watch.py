"""Outbox commits wake the relay: in this process after the commit, across processes by
PostgreSQL NOTIFY; rollbacks and other writes wake nobody."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import sqlalchemy as sa

from calltracking.bus.memory import MemoryBus
from calltracking.bus.relay import OutboxRelay
from calltracking.bus.wake import Wake
from calltracking.store.bulk_insert import insert_rows
from calltracking.store.db import Database
from calltracking.store.deciders import DeciderService
from calltracking.store.outbox import SqlOutbox, emit
from calltracking.store.outbox_watch import listen_outbox, watch_commits
from calltracking.store.schema import accounts, outbox, processed_events
from calltracking.store.visitors import Hello
from tests.bus import Collector
from tests.store.seed import DESKTOP_UA, T0, seed_site

HANG_GUARD_S = 30.0  # fails a hung test; the relay's fallback below is an hour


class Pending(Exception):
    pass


async def _counts_after_commit(db: Database, on_loop: bool) -> list[int]:
    commits: list[int] = []
    watch_commits(db, lambda: commits.append(1))
    async with db.write(on_loop=on_loop) as conn:
        await emit(conn, "call.started", {"id": "c1"}, T0)
        await emit(conn, "call.ended", {"id": "c1"}, T0)
    after_commit = len(commits)
    with contextlib.suppress(Pending):
        async with db.write(on_loop=on_loop) as conn:
            await emit(conn, "call.started", {"id": "c2"}, T0)
            raise Pending
    after_rollback = len(commits)
    async with db.write(on_loop=on_loop) as conn:
        await conn.execute(sa.select(accounts.c.id))
    return [after_commit, after_rollback, len(commits)]


@pytest.mark.parametrize("on_loop", [False, True], ids=["aiosqlite", "on-loop"])
async def test_a_committed_outbox_write_wakes_once_a_rollback_or_other_write_never(
    any_db: Database, on_loop: bool
) -> None:
    assert await _counts_after_commit(any_db, on_loop) == [1, 1, 1]


async def test_outbox_rows_written_in_bulk_wake_after_commit_only(any_db: Database) -> None:
    commits: list[int] = []
    watch_commits(any_db, lambda: commits.append(1))

    def rows(event_id: str) -> list[dict[str, object]]:
        return [{"event_id": event_id, "key": "lease.assigned", "payload": {}, "occurred_at": T0}]

    async with any_db.write() as conn:
        await insert_rows(conn, outbox, rows("e1"))
    assert commits == [1]
    with contextlib.suppress(Pending):
        async with any_db.write() as conn:
            await insert_rows(conn, outbox, rows("e2"))
            raise Pending
    async with any_db.write() as conn:  # a bulk insert elsewhere wakes nobody
        await insert_rows(conn, processed_events, [{"consumer": "c", "event_id": "e", "at": T0}])
    assert commits == [1]


async def test_the_relay_publishes_a_committed_event_without_polling(any_db: Database) -> None:
    wake = Wake()
    watch_commits(any_db, wake.notify)
    bus, got = MemoryBus(), Collector()
    await bus.subscribe(None, ["#"], got, durable=False)
    relay = OutboxRelay(SqlOutbox(any_db), bus)
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(relay.run(0.0, stop, wake.subscribe(), idle_s=3600.0))
        await asyncio.sleep(0)  # its first round (nothing pending) runs, then it sleeps
        async with any_db.write() as conn:
            event = await emit(conn, "lease.assigned", {"visitor": "v"}, T0)
        await got.wait_until(lambda: event.id in got.ids, within_s=HANG_GUARD_S)
        stop.set()
    assert got.ids == [event.id]
    await bus.close()


async def test_another_process_commit_reaches_a_listener_by_notify(pg_db: Database) -> None:
    listening, heard = asyncio.Event(), asyncio.Event()

    def on_commit() -> None:
        # The first call is the listener's own catch-up once it listens.
        (heard if listening.is_set() else listening).set()

    writer = Database(pg_db.url)  # another engine: as another process would write
    watch_commits(writer, lambda: None)
    async with asyncio.TaskGroup() as tasks:
        listener = tasks.create_task(listen_outbox(pg_db.url, on_commit))
        async with asyncio.timeout(HANG_GUARD_S):
            await listening.wait()
            async with writer.write() as conn:
                await emit(conn, "call.started", {"id": "c3"}, T0)
            await heard.wait()
        listener.cancel()
    await writer.close()


async def test_statements_commit_each_on_its_own_and_wake_after_the_block(
    pg_db: Database,
) -> None:
    """`Database.statements()` (the call starts' batches on PostgreSQL): a row is visible to
    another connection as soon as its statement ran, before the block ends; the commit hook
    fires once the block ends, and not for a block that failed after writing nothing."""
    commits: list[int] = []
    watch_commits(pg_db, lambda: commits.append(1))
    pending = sa.select(sa.func.count()).select_from(outbox)
    async with pg_db.statements() as conn:
        await emit(conn, "call.started", {"id": "c4"}, T0)
        async with pg_db.read() as other:
            assert await other.scalar(pending) == 1
        assert commits == []
    assert commits == [1]
    with contextlib.suppress(Pending):
        async with pg_db.statements() as conn:
            await conn.execute(sa.select(accounts.c.id))
            raise Pending
    assert commits == [1]


async def test_a_visitor_batch_that_wrote_events_has_woken_the_relay_when_it_answers(
    any_db: Database,
) -> None:
    """On PostgreSQL a visitor batch commits on a kept connection (kept_transactions.py), which
    the commit watchers never see handed back: the batch wakes the relay itself."""
    site = await seed_site(any_db, reserve=2)
    wakes: list[int] = []
    watch_commits(any_db, lambda: wakes.append(1))
    service = DeciderService(any_db, "node", "7")
    service.outbox_committed = lambda: wakes.append(1)
    hello = Hello(url="https://shop.example/", referrer="", user_agent=DESKTOP_UA)
    await service.hello(site, hello, T0)
    assert wakes
    async with any_db.read() as conn:
        assert (await conn.scalar(sa.select(sa.func.count()).select_from(outbox)) or 0) > 0
    await service.close()

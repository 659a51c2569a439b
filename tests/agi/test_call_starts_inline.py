"""Call starts on a SQLite file run on the loop's thread (store/sqlite_inline.py) and keep the
store's rules: they wait for this process's writers, a batch that meets another process's write
lock goes through the async engine instead, and a caller's flags count calls of earlier months
as one call after another would. Under load a batch waits a window for more starts, on either
database."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from calltracking.core.kinds import AttributionKind
from calltracking.core.records import CallKey
from calltracking.store import db as db_module
from calltracking.store import schema as t
from calltracking.store.call_batches import CallStartBatcher
from calltracking.store.calls import SqlCallRecorder
from calltracking.store.db import Database
from tests.integration.pbx import BOTH_DATABASES, PBX, seed_scene

HELLO_AT = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
CALL_AT = HELLO_AT + timedelta(minutes=3)
NEXT_MONTH = CALL_AT + timedelta(days=10)


async def _linkedids(db: Database) -> list[str]:
    async with db.read() as conn:
        return sorted((await conn.execute(sa.select(t.calls.c.linkedid))).scalars())


async def test_a_batch_meeting_another_processs_writer_goes_through_the_engine(
    sqlite_db: Database, tmp_path: Path
) -> None:
    scene = await seed_scene(sqlite_db, HELLO_AT)
    batcher = CallStartBatcher(sqlite_db, SqlCallRecorder(sqlite_db))
    other = sqlite3.connect(tmp_path / "test.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        call = asyncio.create_task(
            batcher.start_call(CallKey(PBX, "busy-1"), scene.leased, None, CALL_AT)
        )
        for _ in range(20):
            await asyncio.sleep(0)
        assert batcher.fallbacks == 1  # the inline write met the lock and gave up at once
        assert not call.done()  # the engine's writer waits for the lock (busy_timeout)
        other.execute("COMMIT")
        resolution = await asyncio.wait_for(call, timeout=10)
    finally:
        other.close()
        await batcher.close()
    assert resolution.kind is AttributionKind.DYNAMIC
    assert await _linkedids(sqlite_db) == ["busy-1"]
    assert (batcher.batches, batcher.fallbacks) == (1, 1)


async def test_an_inline_batch_waits_for_this_processs_writer(sqlite_db: Database) -> None:
    scene = await seed_scene(sqlite_db, HELLO_AT)
    batcher = CallStartBatcher(sqlite_db, SqlCallRecorder(sqlite_db))
    try:
        async with sqlite_db.write() as conn:
            call = asyncio.create_task(
                batcher.start_call(CallKey(PBX, "turn-1"), scene.leased, None, CALL_AT)
            )
            for _ in range(20):
                await asyncio.sleep(0)
            assert not call.done()
            await conn.execute(sa.select(1))  # the writer still holds SQLite's write lock
        resolution = await asyncio.wait_for(call, timeout=10)
    finally:
        await batcher.close()
    assert resolution.kind is AttributionKind.DYNAMIC
    assert (batcher.batches, batcher.fallbacks) == (1, 0)


async def test_inline_writes_start_a_checkpoint_now_and_then(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "CHECKPOINT_EVERY", 2)
    scene = await seed_scene(sqlite_db, HELLO_AT)
    batcher = CallStartBatcher(sqlite_db, SqlCallRecorder(sqlite_db))
    copied: list[tuple[int, int]] = []
    real = Database.checkpoint

    async def spy(self: Database) -> tuple[int, int]:
        copied.append(await real(self))
        return copied[-1]

    monkeypatch.setattr(Database, "checkpoint", spy)
    for n in range(5):
        await batcher.start_call(CallKey(PBX, f"wal-{n}"), scene.leased, None, CALL_AT)
    await batcher.close()
    await sqlite_db.close()  # waits for the checkpoint in progress
    assert len(copied) in (1, 2)  # after the 2nd and (unless the first still ran) the 4th batch
    assert all(frames > 0 for frames, _ in copied)


@BOTH_DATABASES
async def test_caller_flags_count_earlier_months_as_one_call_after_another(
    any_db: Database,
) -> None:
    scene = await seed_scene(any_db, HELLO_AT)
    recorder = SqlCallRecorder(any_db)
    batcher = CallStartBatcher(any_db, recorder)
    alone, batched = "+79160000001", "+79260000001"
    for caller, prefix in ((alone, "alone"), (batched, "batch")):
        await recorder.start_call(CallKey(PBX, f"{prefix}-0"), scene.leased, caller, CALL_AT)
    for n in (1, 2):
        await recorder.start_call(CallKey(PBX, f"alone-{n}"), scene.leased, alone, NEXT_MONTH)
    await asyncio.gather(
        *(
            batcher.start_call(CallKey(PBX, f"batch-{n}"), scene.leased, batched, NEXT_MONTH)
            for n in (1, 2)
        )
    )
    await batcher.close()
    async with any_db.read() as conn:
        rows = {r.linkedid: r for r in await conn.execute(sa.select(t.calls))}

    def flags(prefix: str) -> list[tuple[bool, bool]]:
        return [
            (rows[f"{prefix}-{n}"].first_time_caller, rows[f"{prefix}-{n}"].lead) for n in range(3)
        ]

    # The first call is a lead and a first-time caller; a new month makes a new lead.
    assert flags("alone") == [(True, True), (False, True), (False, False)]
    assert flags("batch") == flags("alone")


async def test_an_inline_batch_wakes_the_relay_once_its_events_are_committed(
    sqlite_db: Database, tmp_path: Path
) -> None:
    # The inline writer is not the engine outbox_watch.py watches: the batcher says it itself.
    scene = await seed_scene(sqlite_db, HELLO_AT)
    committed_events: list[int] = []

    def committed() -> None:
        # Another connection, as the relay reads: it sees the rows only after the commit.
        other = sqlite3.connect(tmp_path / "test.db")
        try:
            (count,) = other.execute(
                "SELECT count(*) FROM outbox WHERE key = 'call.started'"
            ).fetchone()
        finally:
            other.close()
        committed_events.append(count)

    batcher = CallStartBatcher(sqlite_db, SqlCallRecorder(sqlite_db), committed=committed)
    try:
        await batcher.start_call(CallKey(PBX, "wake-1"), scene.leased, None, CALL_AT)
        await batcher.start_call(CallKey(PBX, "wake-2"), scene.leased, None, CALL_AT)
    finally:
        await batcher.close()
    assert (batcher.batches, batcher.fallbacks) == (2, 0)
    assert committed_events == [1, 2]


async def test_a_site_changed_between_batches_attributes_the_next_batch(
    sqlite_db: Database,
) -> None:
    # A batch's sites are built once per stored row (call_start_facts._site): a changed row is
    # a new site, never the one built before.
    scene = await seed_scene(sqlite_db, HELLO_AT)
    batcher = CallStartBatcher(sqlite_db, SqlCallRecorder(sqlite_db))
    try:
        before = await batcher.start_call(CallKey(PBX, "site-1"), scene.leased, None, CALL_AT)
        async with sqlite_db.write() as conn:
            await conn.execute(
                sa.update(t.sites)
                .where(t.sites.c.id == scene.site.id)
                .values(settings={"route": "sales@operators", "record_calls": False})
            )
        after = await batcher.start_call(CallKey(PBX, "site-2"), scene.leased, None, CALL_AT)
    finally:
        await batcher.close()
    assert (before.route, before.record) == (None, True)
    assert (after.route, after.record) == ("sales@operators", False)
    assert batcher.batches == 2


class _Window:
    """A batch window the test opens and closes by hand, counting how often it was waited."""

    def __init__(self) -> None:
        self.waited = 0
        self.open = asyncio.Event()

    async def __call__(self) -> None:
        self.waited += 1
        await self.open.wait()


@BOTH_DATABASES
async def test_under_load_a_batch_waits_its_window_and_takes_the_starts_that_came_meanwhile(
    any_db: Database,
) -> None:
    scene = await seed_scene(any_db, HELLO_AT)
    window = _Window()
    batcher = CallStartBatcher(any_db, SqlCallRecorder(any_db), window=window)

    def start(linkedid: str) -> asyncio.Task[object]:
        return asyncio.create_task(
            batcher.start_call(CallKey(PBX, linkedid), scene.leased, None, CALL_AT)
        )

    try:
        # Two starts in one turn: one batch, shared (no window before it: nothing was shared yet).
        await asyncio.gather(start("load-1"), start("load-2"))
        assert (batcher.batches, window.waited) == (1, 0)
        first = start("load-3")
        for _ in range(20):
            await asyncio.sleep(0)
        # The previous batch was shared: this one waits its window, and starts that arrive
        # turns later join it instead of paying for a batch of their own.
        assert window.waited == 1 and not first.done()
        later = [start("load-4"), start("load-5")]
        for _ in range(20):
            await asyncio.sleep(0)
        assert not first.done() and batcher.batches == 1
        window.open.set()
        await asyncio.wait_for(asyncio.gather(first, *later), timeout=10)
    finally:
        await batcher.close()
    assert batcher.batches == 2
    assert await _linkedids(any_db) == [f"load-{n}" for n in range(1, 6)]


@BOTH_DATABASES
async def test_a_lone_start_never_waits_for_the_window(any_db: Database) -> None:
    # One call at a time (an idle tracker): each batch holds one start, and none waits.
    scene = await seed_scene(any_db, HELLO_AT)
    window = _Window()  # not opened while the calls run: a start that waited would time out
    batcher = CallStartBatcher(any_db, SqlCallRecorder(any_db), window=window)
    try:
        for n in range(3):
            resolution = await asyncio.wait_for(
                batcher.start_call(CallKey(PBX, f"lone-{n}"), scene.leased, None, CALL_AT),
                timeout=10,
            )
            assert resolution.kind is AttributionKind.DYNAMIC
    finally:
        window.open.set()  # so that a failed run still closes instead of hanging the suite
        await batcher.close()
    assert (batcher.batches, window.waited) == (3, 0)

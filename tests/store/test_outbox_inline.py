"""The relay's outbox on the loop's thread (`SqlOutbox(db, inline=True)` on a SQLite file) reads
and marks exactly what the engine's path does, and goes through the engine when another
process holds SQLite's write lock."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from calltracking.store.db import Database
from calltracking.store.outbox import SqlOutbox, emit
from calltracking.store.schema import outbox
from tests.store.seed import T0


async def _emit(db: Database, n: int) -> list[str]:
    ids = []
    async with db.write() as conn:
        for i in range(n):
            event = await emit(conn, "call.started", {"id": f"c{i}", "n": i}, T0)
            ids.append(event.id)
    return ids


async def _published(db: Database) -> dict[str, datetime | None]:
    async with db.read() as conn:
        rows = await conn.execute(sa.select(outbox.c.event_id, outbox.c.published_at))
        return {r.event_id: r.published_at for r in rows}


async def test_inline_reads_and_marks_as_the_engine_does(sqlite_db: Database) -> None:
    ids = await _emit(sqlite_db, 4)
    inline, engine = SqlOutbox(sqlite_db, inline=True), SqlOutbox(sqlite_db)
    try:
        assert await inline.fetch_pending(10) == await engine.fetch_pending(10)
        assert [e.id for e in await inline.fetch_pending(3)] == ids[:3]
        await inline.mark_published(ids[:2])
        assert [e.id for e in await engine.fetch_pending(10)] == ids[2:]
        assert [e.id for e in await inline.fetch_pending(10)] == ids[2:]
    finally:
        inline.close()
    published = await _published(sqlite_db)
    assert all(published[i] is not None for i in ids[:2])
    assert all(published[i] is None for i in ids[2:])
    assert all(published[i].tzinfo is not None for i in ids[:2])  # type: ignore[union-attr]


async def test_a_mark_meeting_another_processs_writer_goes_through_the_engine(
    sqlite_db: Database, tmp_path: Path
) -> None:
    ids = await _emit(sqlite_db, 2)
    inline = SqlOutbox(sqlite_db, inline=True)
    other = sqlite3.connect(tmp_path / "test.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        mark = asyncio.create_task(inline.mark_published(ids))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not mark.done()  # the inline write gave up; the engine's writer waits its turn
        other.execute("COMMIT")
        await asyncio.wait_for(mark, timeout=10)
    finally:
        other.close()
        inline.close()
    assert all(at is not None for at in (await _published(sqlite_db)).values())

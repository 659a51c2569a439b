"""`Database.write(on_loop=True)` on a SQLite file: the same SQLAlchemy statements, run on the
event loop's thread through sqlite_loop.py, store and return what aiosqlite's engine does, never
give the loop a turn mid-transaction, fall back to aiosqlite when another process holds the write
lock, and leave WAL checkpoints to a worker thread."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from calltracking.store import db as db_module
from calltracking.store.db import Database
from calltracking.store.sqlite_loop import is_busy

METADATA = sa.MetaData()
ROWS = sa.Table(
    "rows",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("text", sa.Text),
    sa.Column("number", sa.BigInteger),
    sa.Column("real", sa.Float),
    sa.Column("blob", sa.LargeBinary),
    sa.Column("at", sa.DateTime(timezone=True)),
    sa.Column("doc", sa.JSON),
    sa.Column("flag", sa.Boolean),
)

Row = tuple[str | None, int | None, float | None, bytes | None, datetime | None, object, bool]

texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
rows = st.tuples(
    st.none() | texts,
    st.none() | st.integers(-(2**63), 2**63 - 1),
    st.none() | st.floats(allow_nan=False),
    st.none() | st.binary(max_size=40),
    st.none() | st.datetimes(timezones=st.just(UTC)),
    st.none() | st.dictionaries(texts, st.integers(-1000, 1000) | texts, max_size=3),
    st.booleans(),
)


def _values(row: Row) -> dict[str, object]:
    names = ("text", "number", "real", "blob", "at", "doc", "flag")
    return dict(zip(names, row, strict=True))


async def _new(path: Path) -> Database:
    db = Database(f"sqlite+aiosqlite:///{path}")
    async with db.write() as conn:
        await conn.run_sync(METADATA.create_all)
    return db


async def _stored_both_ways(path: Path, batch: list[Row]) -> list[object]:
    path.unlink(missing_ok=True)
    db = await _new(path)
    try:
        results: list[object] = []
        for on_loop in (False, True):
            async with db.write(on_loop=on_loop) as conn:
                await conn.execute(sa.delete(ROWS))
                if batch:
                    await conn.execute(sa.insert(ROWS), [_values(row) for row in batch])
                await conn.execute(sa.insert(ROWS).values(_values(batch[0]) if batch else {}))
                inside = (await conn.execute(sa.select(ROWS).order_by(ROWS.c.id))).all()
                streamed = [
                    tuple(r) async for r in await conn.stream(sa.select(ROWS).order_by(ROWS.c.id))
                ]
                returned = (
                    await conn.execute(
                        sa.update(ROWS).values(number=ROWS.c.id * 2).returning(ROWS.c.id)
                    )
                ).all()
            async with db.read() as conn:
                after = (await conn.execute(sa.select(ROWS).order_by(ROWS.c.id))).all()
            stored = [tuple(r) for r in after]
            results.append(([tuple(r) for r in inside], streamed, sorted(returned), stored))
        return results
    finally:
        await db.close()


@settings(max_examples=40, deadline=None)
@given(st.lists(rows, max_size=8))
def test_the_loop_connection_stores_and_returns_what_aiosqlite_does(
    tmp_path_factory: pytest.TempPathFactory, batch: list[Row]
) -> None:
    path = tmp_path_factory.mktemp("loop") / "ct.db"
    through_aiosqlite, on_the_loop = asyncio.run(_stored_both_ways(path, batch))
    assert on_the_loop == through_aiosqlite


async def test_a_transaction_on_the_loop_gives_the_loop_no_turn(tmp_path: Path) -> None:
    db = await _new(tmp_path / "ct.db")
    try:
        turns: list[str] = []
        loop = asyncio.get_running_loop()
        for on_loop in (True, False):
            async with db.write(on_loop=on_loop) as conn:
                loop.call_soon(turns.append, f"on_loop={on_loop}")
                for n in range(5):
                    await conn.execute(sa.insert(ROWS).values(number=n))
                await conn.execute(sa.select(ROWS))
                ran_meanwhile = list(turns)
            await asyncio.sleep(0)
            assert turns[-1] == f"on_loop={on_loop}"
            if on_loop:
                assert ran_meanwhile == []  # every statement answered without a loop turn
            else:
                assert ran_meanwhile == ["on_loop=True", "on_loop=False"]  # aiosqlite hops
    finally:
        await db.close()


async def test_a_failed_transaction_on_the_loop_leaves_nothing(tmp_path: Path) -> None:
    db = await _new(tmp_path / "ct.db")
    try:

        async def failing_batch() -> None:
            async with db.write(on_loop=True) as conn:
                await conn.execute(sa.insert(ROWS).values(number=1))
                raise RuntimeError("the batch failed")

        with pytest.raises(RuntimeError):
            await failing_batch()
        async with db.write(on_loop=True) as conn:
            await conn.execute(sa.insert(ROWS).values(number=2))
        async with db.read() as conn:
            assert (await conn.execute(sa.select(ROWS.c.number))).scalars().all() == [2]
    finally:
        await db.close()


async def test_another_process_holding_the_write_lock_sends_the_write_to_aiosqlite(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ct.db"
    db = await _new(path)
    other = sqlite3.connect(path, isolation_level=None)  # another process's writer
    try:
        other.execute("BEGIN IMMEDIATE")

        async def write() -> None:
            async with db.write(on_loop=True) as conn:
                await conn.execute(sa.insert(ROWS).values(number=7))

        writing = asyncio.create_task(write())
        await asyncio.sleep(0.3)
        assert not writing.done()  # waiting in aiosqlite's busy handler, off the loop's thread
        assert db.loop_fallbacks == 1
        other.execute("COMMIT")
        await asyncio.wait_for(writing, 10)
        async with db.read() as conn:
            assert (await conn.execute(sa.select(ROWS.c.number))).scalars().all() == [7]
        async with db.write(on_loop=True) as conn:  # the lock is free again: on the loop
            await conn.execute(sa.insert(ROWS).values(number=8))
        assert db.loop_fallbacks == 1
    finally:
        other.close()
        await db.close()


async def test_the_loop_connection_leaves_checkpoints_to_a_worker_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "CHECKPOINT_EVERY", 5)
    path = tmp_path / "ct.db"
    wal = Path(f"{path}-wal")
    db = await _new(path)
    try:
        async with db.write(on_loop=True) as conn:
            assert (await conn.exec_driver_sql("PRAGMA wal_autocheckpoint")).scalar() == 0
        sizes = []
        for n in range(60):
            async with db.write(on_loop=True) as conn:
                await conn.execute(sa.insert(ROWS).values(number=n, blob=bytes(8192)))
            if db._checkpoint is not None:
                await db._checkpoint
            sizes.append(wal.stat().st_size)
        # Checkpointed every 5 commits, the WAL is reused from its start instead of growing
        # by two pages a commit (60 commits would leave it over 1 MiB).
        assert max(sizes) < 20 * 8192
    finally:
        await db.close()


async def test_an_in_memory_database_writes_through_aiosqlite() -> None:
    db = Database("sqlite+aiosqlite://")
    try:
        async with db.write(on_loop=True) as conn:
            await conn.execute(sa.text("CREATE TABLE t (n INTEGER)"))
            await conn.execute(sa.text("INSERT INTO t VALUES (1)"))
            assert (await conn.execute(sa.text("SELECT n FROM t"))).scalar() == 1
        assert db.loop_fallbacks == 0
    finally:
        await db.close()


def test_only_a_lock_refusal_counts_as_busy() -> None:
    assert is_busy(sqlite3.OperationalError("database is locked"))
    assert not is_busy(sqlite3.OperationalError("no such table: rows"))
    assert not is_busy(RuntimeError("database is locked"))


async def test_the_loop_connection_opens_the_file_the_url_names_as_sqlalchemy_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(home)
    db = Database("sqlite+aiosqlite:///ct.db")  # relative: to where the tracker was started
    try:
        async with db.write() as conn:
            await conn.run_sync(METADATA.create_all)
        monkeypatch.chdir(elsewhere)  # the loop's connection opens later, from anywhere
        async with db.write(on_loop=True) as conn:
            await conn.execute(sa.insert(ROWS).values(number=1))
        async with db.read() as conn:
            assert (await conn.execute(sa.select(ROWS.c.number))).scalars().all() == [1]
        assert list(elsewhere.iterdir()) == []
    finally:
        await db.close()


@pytest.mark.parametrize("on_loop", [False, True], ids=["aiosqlite", "on-loop"])
async def test_a_write_holds_sqlites_write_lock_from_its_begin(
    tmp_path: Path, on_loop: bool
) -> None:
    path = tmp_path / "ct.db"
    db = await _new(path)
    other = sqlite3.connect(path, isolation_level=None, timeout=0)  # another process
    try:
        async with db.write(on_loop=on_loop):
            # Not a statement run yet, and the lock is taken: the transaction is IMMEDIATE.
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")  # released with the commit
        other.execute("ROLLBACK")
        async with db.read() as conn:  # a read takes no write lock
            await conn.execute(sa.select(ROWS))
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
    finally:
        other.close()
        await db.close()

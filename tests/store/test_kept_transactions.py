"""PostgreSQL transactions on kept connections (store/kept_transactions.py): statements through
SQLAlchemy and through the driver share one transaction, committed or rolled back whole; the
connection is kept after either, replaced when it was lost, and never handed back to the pool
inside a transaction."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa

from calltracking.store.db import Database
from calltracking.store.kept_transactions import DatabaseConnectionLost, KeptConnections

_TABLE = "kept_probe"


async def _make_table(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(sa.text(f"CREATE TABLE IF NOT EXISTS {_TABLE} (v integer)"))
        await conn.execute(sa.text(f"DELETE FROM {_TABLE}"))


async def _values(db: Database) -> list[int]:
    async with db.read() as conn:
        return sorted((await conn.execute(sa.text(f"SELECT v FROM {_TABLE}"))).scalars())


async def _pid(driver: object) -> int:
    return int(await driver.fetchval("SELECT pg_backend_pid()"))  # type: ignore[attr-defined]


async def test_statements_through_both_layers_commit_together_and_not_before(
    pg_db: Database,
) -> None:
    await _make_table(pg_db)
    kept = KeptConnections(pg_db)
    async with kept.transaction() as tx:
        await tx.conn.execute(sa.text(f"INSERT INTO {_TABLE} VALUES (1)"))
        await tx.driver.execute(f"INSERT INTO {_TABLE} VALUES ($1)", 2)
        assert await _values(pg_db) == []  # another connection sees nothing yet
    assert await _values(pg_db) == [1, 2]


async def test_a_failed_transaction_rolls_back_both_layers_and_keeps_its_connection(
    pg_db: Database,
) -> None:
    await _make_table(pg_db)
    kept = KeptConnections(pg_db)
    pids: list[int] = []

    async def failing() -> None:
        async with kept.transaction() as tx:
            pids.append(await _pid(tx.driver))
            await tx.conn.execute(sa.text(f"INSERT INTO {_TABLE} VALUES (1)"))
            await tx.driver.execute(f"INSERT INTO {_TABLE} VALUES (2)")
            raise RuntimeError("the batch failed")

    with pytest.raises(RuntimeError):
        await failing()
    assert await _values(pg_db) == []
    async with kept.transaction() as tx:
        assert await _pid(tx.driver) == pids[0]
        await tx.driver.execute(f"INSERT INTO {_TABLE} VALUES (3)")
    assert await _values(pg_db) == [3]


async def test_a_statement_error_rolls_back_and_the_next_transaction_starts_clean(
    pg_db: Database,
) -> None:
    await _make_table(pg_db)
    kept = KeptConnections(pg_db)

    async def failing() -> None:
        async with kept.transaction() as tx:
            await tx.driver.execute(f"INSERT INTO {_TABLE} VALUES (1)")
            await tx.driver.execute("SELECT 1 / 0")

    with pytest.raises(Exception, match="division by zero"):
        await failing()
    async with kept.transaction() as tx:
        await tx.driver.execute(f"INSERT INTO {_TABLE} VALUES (2)")
    assert await _values(pg_db) == [2]


async def test_a_kept_connection_killed_while_idle_is_replaced_without_failing_the_next(
    pg_db: Database,
) -> None:
    await _make_table(pg_db)
    kept = KeptConnections(pg_db, idle_s=3600.0)
    async with kept.transaction() as tx:
        dead = await _pid(tx.driver)
    async with pg_db.write() as conn:
        assert await conn.scalar(sa.text(f"SELECT pg_terminate_backend({dead})"))
    await asyncio.sleep(0.1)
    async with kept.transaction() as tx:
        assert await _pid(tx.driver) != dead
        await tx.driver.execute(f"INSERT INTO {_TABLE} VALUES (1)")
    assert await _values(pg_db) == [1]


async def test_a_connection_idle_too_long_goes_back_to_the_pool(pg_db: Database) -> None:
    kept = KeptConnections(pg_db, idle_s=0.0)
    async with kept.transaction() as tx:
        conn = tx.conn
    async with kept.transaction() as tx:
        assert tx.conn is not conn
    assert conn.closed


async def test_a_cancelled_transaction_never_returns_its_connection_inside_a_transaction(
    pg_db: Database,
) -> None:
    await _make_table(pg_db)
    kept = KeptConnections(pg_db)
    started = asyncio.Event()

    async def slow() -> None:
        async with kept.transaction() as tx:
            await tx.driver.execute(f"INSERT INTO {_TABLE} VALUES (1)")
            started.set()
            await tx.driver.execute("SELECT pg_sleep(5)")

    task = asyncio.ensure_future(slow())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _values(pg_db) == []
    for _ in range(3):  # whatever connection the pool hands out is outside any transaction
        async with pg_db.engine.connect() as conn:
            driver: Any = (await conn.get_raw_connection()).driver_connection
            assert not driver.is_in_transaction()
    async with kept.transaction() as tx:
        await tx.driver.execute(f"INSERT INTO {_TABLE} VALUES (2)")
    assert await _values(pg_db) == [2]


async def test_at_most_keep_connections_stay_out_of_the_pool(pg_db: Database) -> None:
    kept = KeptConnections(pg_db, keep=1)
    pool = pg_db.engine.pool
    async with kept.transaction() as a, kept.transaction() as b:
        assert a.conn is not b.conn
    assert pool.checkedout() == 1  # type: ignore[attr-defined]
    await kept.close()
    assert pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_closing_the_database_closes_the_kept_connections(pg_url: str) -> None:
    db = Database(pg_url)
    kept = KeptConnections(db)
    async with kept.transaction() as tx:
        conn = tx.conn
    await db.close()
    assert conn.closed


def test_sqlite_has_no_kept_connections(tmp_path: object) -> None:
    with pytest.raises(ValueError, match="PostgreSQL"):
        KeptConnections(Database(f"sqlite+aiosqlite:///{tmp_path}/x.db"))


async def test_a_socket_error_under_a_transaction_is_not_read_as_the_callers_own(
    pg_db: Database,
) -> None:
    """A websocket handler reads ConnectionError as its visitor leaving: the database's own
    socket errors reach it as DatabaseConnectionLost, as SQLAlchemy's wrapping did."""
    kept = KeptConnections(pg_db)

    async def failing() -> None:
        async with kept.transaction():
            raise ConnectionResetError("the database's socket")

    with pytest.raises(DatabaseConnectionLost) as caught:
        await failing()
    assert not isinstance(caught.value, ConnectionError)
    async with kept.transaction() as tx:  # the next transaction runs
        assert await tx.driver.fetchval("SELECT 1") == 1

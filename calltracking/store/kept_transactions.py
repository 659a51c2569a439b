"""PostgreSQL: write transactions on connections a group-commit writer keeps between them, begun
and ended on the driver.

Why: a visitor batch (site_batches.py) is a few statements, yet through SQLAlchemy's async layer
each transaction also paid a pool checkout and check-in and SQLAlchemy's begin and commit around
the driver's: with the lock's and the insert's statements, about a millisecond of CPU a batch
whatever its size (docs/benchmarks.md). A node serving a site at a lower rate runs smaller
batches, so it paid that millisecond over fewer visitors each.

Rules:
- A connection comes from the Database's own pool (SQLAlchemy's codecs, its disconnect handling)
  and is set to AUTOCOMMIT, so SQLAlchemy begins and commits nothing on it; `transaction()`
  sends BEGIN and COMMIT itself on the asyncpg connection. Every statement in between, whether
  through the SQLAlchemy connection or straight through the driver, runs in that transaction.
- After a commit the connection is kept for the next transaction, up to KEEP of them idle; one
  idle for PING_AFTER_IDLE_S or longer goes back to the pool, whose checkout pings a connection
  that sat idle (db.py), so a database restart costs no batch.
- A transaction that fails is rolled back on its connection, which is kept; a connection that
  cannot roll back (lost, or cancelled mid-statement) is invalidated instead. A connection never
  goes back to the pool inside a transaction: SQLAlchemy's reset on return would not end one it
  did not begin.
- A socket error under a transaction is raised as `DatabaseConnectionLost`, never as the
  driver's `OSError`: a websocket handler reads `ConnectionError` as its visitor leaving.
- The commit watchers (outbox_watch.py) see the statements that ran through SQLAlchemy, never a
  check-in after them: the writer tells them itself after a commit that wrote outbox rows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.store.db import PING_AFTER_IDLE_S, Database

log = logging.getLogger(__name__)
KEEP = 4
# What a lost connection raises through asyncpg: the server gone, the socket cut, or a
# connection asyncpg already knows to be closed (call_batches.py retries on it too).
CONNECTION_LOST = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError)


class DatabaseConnectionLost(Exception):
    """The database's connection failed under a transaction. Raised instead of the driver's
    OSError, which a caller would read as its own client's connection (SQLAlchemy wraps it the
    same way)."""


@dataclass(slots=True)
class KeptTransaction:
    """One transaction's connection: `conn` through SQLAlchemy, `driver` its asyncpg connection."""

    conn: AsyncConnection
    driver: Any
    idle_since: float = 0.0


class KeptConnections:
    def __init__(self, db: Database, keep: int = KEEP, idle_s: float = PING_AFTER_IDLE_S) -> None:
        if db.is_sqlite:
            raise ValueError("KeptConnections is for PostgreSQL")
        self._db = db
        self._keep = keep
        self._idle_s = idle_s
        self._idle: list[KeptTransaction] = []
        db.on_close(self.close)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[KeptTransaction]:
        """A transaction committed when the block ends without error, else rolled back."""
        tx = await self._begin()
        try:
            yield tx
            await tx.driver.execute("COMMIT")
        except BaseException as exc:
            await self._abort(tx, cancelled=isinstance(exc, asyncio.CancelledError))
            if isinstance(exc, OSError):
                raise DatabaseConnectionLost(str(exc)) from exc
            raise
        if tx.conn.in_transaction():  # SQLAlchemy's own bookkeeping of what ran through it
            await tx.conn.commit()
        await self._put(tx)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for tx in idle:
            await tx.conn.close()

    async def _begin(self) -> KeptTransaction:
        """BEGIN on a kept connection; a kept one found lost (the database restarted within
        the last PING_AFTER_IDLE_S) is replaced, as nothing ran on it yet."""
        tx = await self._take()
        try:
            await tx.driver.execute("BEGIN")
        except CONNECTION_LOST:
            await _invalidate(tx)
            tx = await self._take()
            try:
                await tx.driver.execute("BEGIN")
            except BaseException:
                await _invalidate(tx)
                raise
        except BaseException:
            await _invalidate(tx)
            raise
        return tx

    async def _take(self) -> KeptTransaction:
        now = time.monotonic()
        while self._idle:
            tx = self._idle.pop()
            if now - tx.idle_since < self._idle_s:
                return tx
            await tx.conn.close()  # the pool pings it on its next checkout
        conn = await self._db.engine.connect()
        try:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            driver = (await conn.get_raw_connection()).driver_connection
        except BaseException:
            await conn.close()
            raise
        return KeptTransaction(conn, driver)

    async def _put(self, tx: KeptTransaction) -> None:
        if len(self._idle) >= self._keep:
            await tx.conn.close()
            return
        tx.idle_since = time.monotonic()
        self._idle.append(tx)

    async def _abort(self, tx: KeptTransaction, *, cancelled: bool) -> None:
        """Roll back and keep the connection; invalidate it when that fails, or when a
        cancellation may have cut a statement off mid-way."""
        if cancelled:
            await _invalidate(tx)
            return
        try:
            if tx.driver.is_in_transaction():
                await tx.driver.execute("ROLLBACK")
            if tx.conn.in_transaction():
                await tx.conn.rollback()
        except Exception:
            await _invalidate(tx)
            return
        await self._put(tx)


async def _invalidate(tx: KeptTransaction) -> None:
    try:
        await tx.conn.invalidate()
        await tx.conn.close()
    except Exception:
        log.debug("could not close a failed connection", exc_info=True)

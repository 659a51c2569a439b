"""Engines and transactions for SQLite (the embedded default) and PostgreSQL.

SQLite: WAL, a busy timeout, foreign keys, and every write transaction opened with
`BEGIN IMMEDIATE`, so that two writers serialise at BEGIN instead of failing later with
SQLITE_BUSY_SNAPSHOT (a deferred transaction that read first cannot upgrade to write in WAL).
Reads use a second engine with plain deferred transactions, so they never wait for a writer.

PostgreSQL: allocations lock the account row (`FOR UPDATE`), which serialises them per account
across processes; the partial unique index on active leases is the final guard.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 30_000


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        # SQLite has one writer at a time; queueing writers here, in order, beats every one of
        # them sleeping in SQLite's busy handler (other processes still meet busy_timeout).
        self._write_lock: asyncio.Lock | None = None
        if self.is_sqlite:
            self.engine = _sqlite_engine(url, begin="BEGIN IMMEDIATE")
            self.reader = _sqlite_engine(url, begin="BEGIN")
            self._write_lock = asyncio.Lock()
        else:
            self.engine = create_async_engine(
                url, pool_size=10, max_overflow=20, pool_pre_ping=True
            )
            self.reader = self.engine

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction: committed on success, rolled back on any exception."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def writer_turn(self) -> AsyncIterator[None]:
        """This process's turn to write without a connection of this Database's: for a writer of
        its own on the same SQLite file (sqlite_inline.py), which must not overlap `write()`.
        Nothing to wait for on PostgreSQL."""
        if self._write_lock is None:
            yield
            return
        async with self._write_lock:
            yield

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.reader.connect() as conn:
            yield conn
            await conn.rollback()

    async def ping(self) -> bool:
        try:
            async with self.read() as conn:
                await conn.execute(sa.text("SELECT 1"))
            return True
        except Exception:
            return False

    async def close(self) -> None:
        await self.engine.dispose()
        if self.reader is not self.engine:
            await self.reader.dispose()


def _sqlite_engine(url: str, *, begin: str) -> AsyncEngine:
    engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @sa.event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (the sqlite3 module's legacy transaction control would
        # open transactions lazily and never as IMMEDIATE).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine

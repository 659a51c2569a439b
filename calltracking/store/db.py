"""Engines and transactions for SQLite (the embedded default) and PostgreSQL.

SQLite: WAL, a busy timeout, foreign keys, and every write transaction opened with
`BEGIN IMMEDIATE`, so that two writers serialise at BEGIN instead of failing later with
SQLITE_BUSY_SNAPSHOT (a deferred transaction that read first cannot upgrade to write in WAL).
Reads use a second engine with plain deferred transactions, so they never wait for a writer.

PostgreSQL: a site's decisions are serialised across processes by the site's lock
(site_state.py); the partial unique index on active leases is the final guard. A pooled
connection is pinged before use only when it has sat idle for `PING_AFTER_IDLE_S`: SQLAlchemy's
`pool_pre_ping` costs three round trips (BEGIN, `;`, ROLLBACK) on every checkout, more than a
visitor batch's own statements' share, while a connection handed back moments ago is as alive
as one that is in use. A connection that died meanwhile fails its transaction like one that
dies in use, and SQLAlchemy then recycles every connection older than the failure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 30_000
PING_AFTER_IDLE_S = 1.0
_IDLE_SINCE = "calltracking.idle_since"


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
            self.engine = _postgres_engine(url)
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


def _postgres_engine(url: str) -> AsyncEngine:
    engine = create_async_engine(url, pool_size=10, max_overflow=20)

    @sa.event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[_IDLE_SINCE] = time.monotonic()

    @sa.event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop(_IDLE_SINCE, None)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return
        try:
            engine.sync_engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool discards this connection and checks out another (SQLAlchemy's
            # documented pessimistic disconnect handling).
            raise sa.exc.DisconnectionError(f"a pooled connection is gone: {exc}") from exc

    return engine


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

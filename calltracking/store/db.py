"""Engines and transactions for SQLite (the embedded default) and PostgreSQL.

SQLite: WAL, a busy timeout, foreign keys, and every write transaction opened with
`BEGIN IMMEDIATE`, so that two writers serialise at BEGIN instead of failing later with
SQLITE_BUSY_SNAPSHOT (a deferred transaction that read first cannot upgrade to write in WAL).
Reads use a second engine with plain deferred transactions, so they never wait for a writer.
On a SQLite file, `write(on_loop=True)` runs the transaction on the event loop's own thread
(sqlite_loop.py), for the hot paths' group commits; it falls back to the aiosqlite engine when
another process holds the write lock. The connections on the loop's thread (this one and
sqlite_inline.py's) never checkpoint; `committed_without_checkpoint` starts one off the loop
every CHECKPOINT_EVERY of their commits.

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
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from calltracking.store import sqlite_loop

log = logging.getLogger(__name__)
SQLITE_BUSY_TIMEOUT_MS = 30_000
CHECKPOINT_EVERY = 200
PING_AFTER_IDLE_S = 1.0
_IDLE_SINCE = "calltracking.idle_since"


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        # SQLite has one writer at a time; queueing writers here, in order, beats every one of
        # them sleeping in SQLite's busy handler (other processes still meet busy_timeout).
        self._write_lock: asyncio.Lock | None = None
        self._loop_engine: AsyncEngine | None = None
        self._unchecked_commits = 0
        self._checkpoint: asyncio.Task[None] | None = None
        self.loop_fallbacks = 0  # on-loop writes that met another process's lock
        # What holds connections of these engines outside their pools, closed before them.
        self._closers: list[Callable[[], Awaitable[None]]] = []
        if self.is_sqlite:
            self.engine = _sqlite_engine(url, begin="BEGIN IMMEDIATE")
            self.reader = _sqlite_engine(url, begin="BEGIN")
            self._write_lock = asyncio.Lock()
            if sqlite_file(url) is not None:
                self._loop_engine = _sqlite_engine(
                    url, begin="BEGIN IMMEDIATE", busy_ms=0, async_creator=sqlite_loop.creator(url)
                )
        else:
            self.engine = _postgres_engine(url)
            self.reader = self.engine

    @property
    def write_engines(self) -> list[AsyncEngine]:
        """Every engine a `write()` may commit through (for commit hooks: outbox_watch.py)."""
        return [self.engine] if self._loop_engine is None else [self.engine, self._loop_engine]

    @asynccontextmanager
    async def write(self, *, on_loop: bool = False) -> AsyncIterator[AsyncConnection]:
        """One write transaction: committed on success, rolled back on any exception.

        `on_loop`: on a SQLite file, run it on the loop's thread (for short, hot transactions:
        the loop waits for every statement)."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock:
            on_loop_conn = await self._begin_on_loop() if on_loop else None
            if on_loop_conn is None:
                async with self.engine.begin() as conn:
                    yield conn
                return
            try:
                yield on_loop_conn
            except BaseException:
                await on_loop_conn.rollback()
                raise
            else:
                await on_loop_conn.commit()
            finally:
                await on_loop_conn.close()
            self.committed_without_checkpoint()

    async def _begin_on_loop(self) -> AsyncConnection | None:
        """A transaction on the loop engine's connection; None when there is no such engine or
        another process holds SQLite's write lock (the caller then waits on aiosqlite's)."""
        if self._loop_engine is None:
            return None
        try:
            # A new connection's first statement (journal mode) may meet the lock as well.
            conn = await self._loop_engine.connect()
        except OperationalError as exc:
            self._count_busy(exc)
            return None
        try:
            await conn.begin()
        except OperationalError as exc:
            await conn.close()
            self._count_busy(exc)
            return None
        except BaseException:
            await conn.close()
            raise
        return conn

    def _count_busy(self, exc: OperationalError) -> None:
        """Count a refusal to wait for another process's lock; raise any other error."""
        if not sqlite_loop.is_busy(exc):
            raise exc
        self.loop_fallbacks += 1

    def committed_without_checkpoint(self) -> None:
        """Count a commit by a connection that never checkpoints (the loop's, sqlite_inline.py's):
        every CHECKPOINT_EVERY of them start a PASSIVE checkpoint on aiosqlite's thread, so the
        WAL of a tracker whose writes all run on the loop still gets copied back and reused."""
        self._unchecked_commits += 1
        if self._unchecked_commits % CHECKPOINT_EVERY:
            return
        if self._checkpoint is None or self._checkpoint.done():
            self._checkpoint = asyncio.create_task(self._checkpoint_wal(), name="sqlite-wal")

    async def checkpoint(self) -> tuple[int, int]:
        """A PASSIVE checkpoint, off the loop's thread: copies what it can, waits on no one.
        Returns (frames in the WAL, frames copied)."""
        async with self.reader.connect() as conn:
            result = await conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            _busy, frames, copied = tuple(result.one())
            await conn.rollback()
        return int(frames), int(copied)

    async def _checkpoint_wal(self) -> None:
        try:
            await self.checkpoint()
        except Exception:
            # Any other connection's commit checkpoints as well; the next due one tries again.
            log.exception("SQLite WAL checkpoint failed")

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
    async def statements(self) -> AsyncIterator[AsyncConnection]:
        """PostgreSQL only: a connection whose every statement commits on its own (no BEGIN, no
        COMMIT: two round trips less), for work whose writes are one statement. Commit hooks
        (outbox_watch.py) fire as after a transaction, once the block ends without error."""
        if self.is_sqlite:
            raise RuntimeError("statements() is for PostgreSQL; SQLite writes take write()")
        async with self.engine.connect() as raw:
            conn = await raw.execution_options(isolation_level="AUTOCOMMIT")
            yield conn
            await conn.commit()

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

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Run `closer` first in `close()` (a holder of connections it keeps out of the pool)."""
        self._closers.append(closer)

    async def close(self) -> None:
        for closer in self._closers:
            await closer()
        if self._checkpoint is not None:
            await self._checkpoint
        if self._loop_engine is not None:
            await self._loop_engine.dispose()
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


def sqlite_file(url: str) -> str | None:
    """The file of a SQLite URL; None for any other database and for an in-memory one."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return None
    name = parsed.database or ""
    if name in ("", ":memory:") or "mode=memory" in str(parsed):
        return None
    return name


def _sqlite_engine(
    url: str,
    *,
    begin: str,
    busy_ms: int = SQLITE_BUSY_TIMEOUT_MS,
    async_creator: Any = None,
) -> AsyncEngine:
    if async_creator is None:
        engine = create_async_engine(url, connect_args={"timeout": busy_ms / 1000})
    else:
        engine = create_async_engine(url, async_creator=async_creator)

    @sa.event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (the sqlite3 module's legacy transaction control would
        # open transactions lazily and never as IMMEDIATE).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine

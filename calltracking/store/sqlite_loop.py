"""An aiosqlite-shaped SQLite connection whose coroutines run on the event loop's own thread.

Why: the visitors' group commits are async code on an `AsyncConnection` (the decider's ops await
their statements). Through aiosqlite each statement costs three or four hops to the connection's
thread and back, each waiting for a turn of a busy loop: a batch of four visitors held the
process's SQLite writer turn for ~24 ms of wall time (p50, with FastAGI dialogues running), for
well under a millisecond of SQLite work, and the FastAGI's call starts waited behind it. Handed
to SQLAlchemy's aiosqlite dialect as `async_creator`, this connection answers every await at
once, so the same ops and statements run back to back (sqlite_inline.py does the same for code
written against a sync `Connection`).

Rules:
- Only for a SQLite file: an in-memory database would be another database here.
- It never waits on a lock: `busy_timeout` is 0, so a `BEGIN IMMEDIATE` that meets another
  process's write lock fails at once with "database is locked" and the caller takes the aiosqlite
  engine instead (`Database.write(on_loop=True)`); this process's own writers are excluded by the
  Database's writer turn. A commit under WAL with the write lock held never waits.
- The connection never checkpoints on commit (`wal_autocheckpoint=0`: a checkpoint writes and
  fsyncs pages, too long for the loop's thread); its owner runs PASSIVE checkpoints on a worker
  thread (`Database`).
- It implements what SQLAlchemy's aiosqlite adapter calls and nothing else; tests/store/
  test_sqlite_loop.py runs the adapter over it and compares every statement's result with
  aiosqlite's.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import make_url


class LoopCursor:
    __slots__ = ("_cursor",)

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> LoopCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Any = ()) -> LoopCursor:
        self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> LoopCursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        if size is None:
            return self._cursor.fetchmany()
        return self._cursor.fetchmany(size)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    async def nextset(self) -> None:
        return None

    async def setinputsizes(self, *_sizes: Any) -> None:
        return None

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _RunNow:
    """Stands in for aiosqlite's request queue, which SQLAlchemy's adapter uses to set the
    isolation level on the connection's thread: here that thread is the caller's."""

    __slots__ = ()

    @staticmethod
    def put_nowait(request: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = request
        try:
            future.set_result(function())
        except Exception as exc:  # delivered to the adapter through the future, as aiosqlite does
            future.set_exception(exc)


class LoopConnection:
    """The driver connection: `_conn`, `_connection` and `_tx` are the names the adapter reads."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._connection: sqlite3.Connection | None = conn
        self._tx = _RunNow()

    def cursor(self) -> LoopCursor:
        return LoopCursor(self._conn.cursor())

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()

    def stop(self) -> None:
        """The adapter's forced close (a connection invalidated outside a greenlet)."""
        if self._connection is not None:
            self._connection = None
            self._conn.close()

    async def create_function(self, *args: Any, **kw: Any) -> None:
        self._conn.create_function(*args, **kw)

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level


def creator(url: str) -> Callable[[], Any]:
    """An `async_creator` for `create_async_engine`: a loop-thread connection to the database of
    `url` (its file and URI options read as SQLAlchemy's SQLite dialect reads them), with no
    busy wait and no checkpoint on commit."""
    args, options = SQLiteDialect_pysqlite().create_connect_args(make_url(url))
    (database,) = args
    uri = bool(options.get("uri", False))

    async def connect() -> LoopConnection:
        conn = sqlite3.connect(
            database, timeout=0, isolation_level=None, check_same_thread=False, uri=uri
        )
        conn.execute("PRAGMA wal_autocheckpoint=0")
        return LoopConnection(conn)

    return connect


def is_busy(exc: BaseException) -> bool:
    """True for SQLite refusing to wait for another connection's lock (busy_timeout 0)."""
    orig = getattr(exc, "orig", exc)
    return isinstance(orig, sqlite3.OperationalError) and "locked" in str(orig)

"""Short SQLite transactions on the event loop's own thread, for the FastAGI's group commits.

Why: through aiosqlite every statement costs three or four hops between the loop and the
connection's thread (cursor, execute, fetch, close), each waiting for a turn of a busy loop and
for the GIL; a batch of call starts made ~40 of them (~60 ms per batch under load, for well under
a millisecond of SQLite work). Here a batch runs its statements back to back, synchronously.

Rules:
- Only for a SQLite file (`usable(url)`): an in-memory database would be another database here.
- Nothing here ever waits on a lock. The connections have no busy handler (`timeout=0`): a
  transaction that meets another process's write lock fails at once with OperationalError and
  the caller runs the same work through the async engine instead (`Busy` is that signal). A
  writer in this process is excluded by taking `Database.writer_turn()` before `write`.
- Reads are deferred transactions (WAL: never blocked by a writer), rolled back after; writes
  are `BEGIN IMMEDIATE`, committed when `fn` returns, rolled back if it raises.
- The write connection never checkpoints on commit (`wal_autocheckpoint=0`: a checkpoint writes
  and fsyncs pages, too long for the loop's thread); the caller reports each write to
  `Database.committed_without_checkpoint`, which checkpoints off the loop now and then.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import OperationalError

from calltracking.store.db import sqlite_file

P = ParamSpec("P")
R = TypeVar("R")


class Busy(Exception):
    """SQLite could not start or finish the transaction without waiting; nothing was written."""


def usable(url: str) -> bool:
    """True for a SQLite database in a file."""
    return sqlite_file(url) is not None


class InlineSqlite:
    def __init__(self, url: str) -> None:
        if not usable(url):
            raise ValueError("InlineSqlite needs a SQLite file")
        sync_url = make_url(url).set(drivername="sqlite")
        self._reader = _engine(sync_url, "BEGIN", busy_ms=0)
        self._writer = _engine(sync_url, "BEGIN IMMEDIATE", busy_ms=0, autocheckpoint=False)

    def read(self, fn: Callable[Concatenate[Connection, P], R], *args: P.args, **kw: P.kwargs) -> R:
        """`fn(conn, ...)` in a read transaction; Busy if SQLite would have waited."""
        try:
            with self._reader.connect() as conn:
                try:
                    return fn(conn, *args, **kw)
                finally:
                    conn.rollback()
        except OperationalError as exc:
            raise Busy(str(exc.orig)) from exc

    def write(
        self, fn: Callable[Concatenate[Connection, P], R], *args: P.args, **kw: P.kwargs
    ) -> R:
        """`fn(conn, ...)` in a write transaction, committed; Busy if SQLite would have waited
        (then nothing was written). Hold `Database.writer_turn()` around it."""
        try:
            with self._writer.begin() as conn:
                result = fn(conn, *args, **kw)
        except OperationalError as exc:
            raise Busy(str(exc.orig)) from exc
        return result

    def close(self) -> None:
        for engine in (self._reader, self._writer):
            engine.dispose()


def _engine(url: sa.URL, begin: str, *, busy_ms: int, autocheckpoint: bool = True) -> Engine:
    # One connection each, kept open (a pool of one): opening a SQLite connection costs more
    # than a whole batch's statements.
    engine = sa.create_engine(
        url,
        poolclass=sa.pool.StaticPool,
        connect_args={"timeout": busy_ms / 1000, "check_same_thread": False},
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (as db.py)
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        if not autocheckpoint:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine

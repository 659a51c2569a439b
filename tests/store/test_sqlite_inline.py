"""The SQLite connections that run on the event loop's thread never wait: a transaction that
would meet another writer fails at once as `Busy` (nothing written), and the writer leaves WAL
checkpoints to a worker thread."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from calltracking.store.db import Database
from calltracking.store.sqlite_inline import Busy, InlineSqlite, usable


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite+aiosqlite:////var/lib/calltracking/ct.db", True),
        ("sqlite+aiosqlite:///relative.db", True),
        ("sqlite+aiosqlite://", False),
        ("sqlite+aiosqlite:///:memory:", False),
        ("sqlite+aiosqlite:///file:ct?mode=memory&cache=shared&uri=true", False),
        ("postgresql+asyncpg://postgres@127.0.0.1:5432/ct", False),
    ],
)
def test_only_a_sqlite_file_is_used_inline(url: str, expected: bool) -> None:
    assert usable(url) is expected


def _scratch(conn: Connection) -> None:
    conn.exec_driver_sql("CREATE TABLE scratch (name TEXT)")


def _count(conn: Connection) -> int:
    return int(conn.exec_driver_sql("SELECT count(*) FROM scratch").scalar() or 0)


def _add(conn: Connection, name: str) -> None:
    conn.execute(sa.text("INSERT INTO scratch (name) VALUES (:name)"), {"name": name})


async def test_a_write_meeting_another_writer_is_busy_at_once_and_writes_nothing(
    sqlite_db: Database, tmp_path: Path
) -> None:
    inline = InlineSqlite(sqlite_db.url)
    inline.write(_scratch)
    other = sqlite3.connect(tmp_path / "test.db", isolation_level=None)  # another process
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(Busy):
            inline.write(_add, "acc-busy")
        assert inline.read(_count) == 0  # readers never wait for the writer (WAL)
        other.execute("COMMIT")
        inline.write(_add, "acc-after")
        assert inline.read(_count) == 1
    finally:
        other.close()
        inline.close()


async def test_the_inline_writer_never_checkpoints_and_the_database_does_off_the_loop(
    sqlite_db: Database,
) -> None:
    inline = InlineSqlite(sqlite_db.url)
    try:
        assert inline.write(lambda c: c.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()) == 0
        inline.write(_scratch)
        frames, copied = await sqlite_db.checkpoint()
        assert frames > 0 and copied == frames
    finally:
        inline.close()

"""PostgreSQL's pooled connections: one that died while idle is replaced before it is used, and
one handed back moments ago is used again without a ping's round trips."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from calltracking.store import db as db_module
from calltracking.store.db import Database


async def _backend_pid(db: Database) -> int:
    async with db.read() as conn:
        return int(await conn.scalar(sa.text("SELECT pg_backend_pid()")))


async def test_a_connection_killed_while_idle_is_replaced_before_use(
    pg_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_S", 0.0)
    pid = await _backend_pid(pg_db)
    killer = Database(pg_db.url)
    try:
        async with killer.write() as conn:
            assert await conn.scalar(sa.text(f"SELECT pg_terminate_backend({pid})"))
    finally:
        await killer.close()

    async with pg_db.write() as conn:
        assert await conn.scalar(sa.text("SELECT 1")) == 1
    assert await _backend_pid(pg_db) != pid


async def test_a_connection_handed_back_moments_ago_is_not_pinged(
    pg_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_S", 3600.0)
    await _backend_pid(pg_db)
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    pings = 0
    dialect = pg_db.engine.sync_engine.dialect
    original_ping = dialect.do_ping

    def counting_ping(dbapi_connection: Any) -> bool:
        nonlocal pings
        pings += 1
        return original_ping(dbapi_connection)

    monkeypatch.setattr(dialect, "do_ping", counting_ping)
    sa.event.listen(pg_db.engine.sync_engine, "before_cursor_execute", record)
    for _ in range(3):
        await _backend_pid(pg_db)
    assert statements == ["SELECT pg_backend_pid()"] * 3
    assert pings == 0

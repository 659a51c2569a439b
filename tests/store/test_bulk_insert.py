"""Rows written through the driver's executemany read back exactly as rows written through
SQLAlchemy, and compare with SQLAlchemy-written values in SQL the same way (SQLite compares
datetimes as text)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from calltracking.store import schema as t
from calltracking.store.bulk_insert import insert_rows
from calltracking.store.db import Database
from tests.store.seed import T0, seed_site

MOSCOW = timezone(timedelta(hours=3))


def _visitor(i: int, at: datetime, **more: Any) -> dict[str, Any]:
    return {
        "id": f"v{i}",
        "site_id": more.pop("site_id"),
        "created_at": at,
        "last_seen_at": at,
        "last_activity_at": at,
        "bot": i % 2 == 0,
        **more,
    }


async def test_rows_read_back_as_sqlalchemy_would_have_stored_them(any_db: Database) -> None:
    site = await seed_site(any_db, reserve=0)
    whole_second = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
    moments = [whole_second, whole_second.replace(microsecond=7), T0.astimezone(MOSCOW)]
    async with any_db.write() as conn:
        await insert_rows(
            conn,
            t.visitors,
            [_visitor(i, at, site_id=site.id) for i, at in enumerate(moments)],
        )
        await conn.execute(
            t.visitors.insert(),
            [_visitor(10 + i, at, site_id=site.id) for i, at in enumerate(moments)],
        )
    async with any_db.read() as conn:
        rows = {r.id: r for r in await conn.execute(sa.select(t.visitors))}
    for i, at in enumerate(moments):
        fast, usual = rows[f"v{i}"], rows[f"v{10 + i}"]
        assert fast.created_at == usual.created_at == at
        assert (fast.bot, fast.wants_number, fast.revoked_at) == (i % 2 == 0, False, None)
        assert (usual.bot, usual.wants_number) == (fast.bot, fast.wants_number)


async def test_stored_moments_compare_in_sql_like_sqlalchemys(any_db: Database) -> None:
    site = await seed_site(any_db, reserve=0)
    whole_second = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
    async with any_db.write() as conn:
        await insert_rows(conn, t.visitors, [_visitor(1, whole_second, site_id=site.id)])
    async with any_db.read() as conn:
        for bound, expected in ((whole_second, 1), (whole_second - timedelta(microseconds=1), 0)):
            count = await conn.scalar(
                sa.select(sa.func.count()).where(t.visitors.c.created_at <= bound)
            )
            assert count == expected


async def test_json_columns_and_autoincrement_keys(any_db: Database) -> None:
    rows = [
        {"event_id": f"e{i}", "key": "lease.assigned", "payload": {"n": i, "text": "é"},
         "occurred_at": T0}
        for i in range(3)
    ]  # fmt: skip
    async with any_db.write() as conn:
        await insert_rows(conn, t.outbox, rows)
    async with any_db.read() as conn:
        stored = (await conn.execute(sa.select(t.outbox).order_by(t.outbox.c.seq))).all()
    assert [r.payload for r in stored] == [{"n": i, "text": "é"} for i in range(3)]
    assert len({r.seq for r in stored}) == 3 and [r.published_at for r in stored] == [None] * 3


async def test_naive_moments_and_unknown_columns_are_refused(any_db: Database) -> None:
    site = await seed_site(any_db, reserve=0)
    naive = datetime(2026, 11, 30, 12, 0)
    with pytest.raises(ValueError, match="naive"):
        async with any_db.write() as conn:
            await insert_rows(conn, t.visitors, [_visitor(1, naive, site_id=site.id)])
    with pytest.raises(ValueError, match="no column"):
        async with any_db.write() as conn:
            await insert_rows(conn, t.visitors, [_visitor(2, T0, site_id=site.id, color="red")])
    async with any_db.read() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(t.visitors)) == 0

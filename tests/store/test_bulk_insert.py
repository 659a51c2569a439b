"""Rows written through the driver's executemany read back exactly as rows written through
SQLAlchemy, and compare with SQLAlchemy-written values in SQL the same way (SQLite compares
datetimes as text)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from calltracking.store import schema as t
from calltracking.store import site_state
from calltracking.store.bulk_insert import insert_rows, insert_tables
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


def _visit(i: int, visitor: str, site_id: str, **more: Any) -> dict[str, Any]:
    return {
        "id": f"visit{i}",
        "visitor_id": visitor,
        "site_id": site_id,
        "started_at": T0,
        "last_seen_at": T0,
        "source": "google",
        "medium": "organic",
        "campaign": None,
        "landing_url": "https://shop.example/é",
        "tracked": True,
        **more,
    }


async def test_several_tables_in_one_call_store_what_one_call_each_stores(
    any_db: Database,
) -> None:
    site = await seed_site(any_db, reserve=0)
    event = {"key": "lease.assigned", "payload": {"n": 1}, "occurred_at": T0}
    async with any_db.write() as conn:
        await insert_tables(
            conn,
            [
                (t.visitors, [_visitor(1, T0, site_id=site.id)]),
                (t.visits, [_visit(1, "v1", site.id), _visit(2, "v1", site.id)]),
                (t.tabs, []),
                (t.outbox, [{"event_id": "e1", **event}]),
            ],
        )
        await insert_rows(conn, t.visitors, [_visitor(3, T0, site_id=site.id)])
        await insert_rows(conn, t.visits, [_visit(3, "v3", site.id), _visit(4, "v3", site.id)])
        await insert_rows(conn, t.outbox, [{"event_id": "e2", **event}])
    async with any_db.read() as conn:
        visits = {r.id: r for r in await conn.execute(sa.select(t.visits))}
        visitors = {r.id: r for r in await conn.execute(sa.select(t.visitors))}
        events = {r.event_id: r for r in await conn.execute(sa.select(t.outbox))}
    columns = [c.key for c in t.visits.c if c.key not in ("id", "visitor_id")]
    for together, alone in (("visit1", "visit3"), ("visit2", "visit4")):
        assert [visits[together]._mapping[c] for c in columns] == [
            visits[alone]._mapping[c] for c in columns
        ]
    assert visits["visit1"].got_number is False  # a column's default
    v1, v2 = visitors["v1"], visitors["v3"]
    assert (v1.created_at, v1.bot, v1.wants_number) == (v2.created_at, v2.bot, v2.wants_number)
    assert events["e1"].payload == events["e2"].payload == {"n": 1}


async def test_one_too_long_value_fails_the_whole_call_rather_than_being_cut(
    pg_db: Database,
) -> None:
    """(SQLite does not enforce a string column's length at all.)"""
    site = await seed_site(pg_db, reserve=0)
    with pytest.raises(sa.exc.DBAPIError, match="too long"):
        async with pg_db.write() as conn:
            await insert_tables(
                conn,
                [
                    (t.visitors, [_visitor(1, T0, site_id=site.id)]),
                    (t.visits, [_visit(1, "v1", site.id, source="x" * 101)]),
                ],
            )
    async with pg_db.read() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(t.visitors)) == 0


async def test_a_statement_riding_along_runs_once_with_the_rows_or_is_left_to_the_caller(
    any_db: Database,
) -> None:
    """`also` (the site version's bump in a group commit) joins the one statement on
    PostgreSQL and runs exactly once; elsewhere, or with one table, the caller is told to run
    it itself."""
    site = await seed_site(any_db, reserve=0)
    bump = site_state.bump_statement(site.id, "[[1,[],[]]]")
    async with any_db.write() as conn:
        before = await site_state.lock_site(conn, site.id)
        together = await insert_tables(
            conn,
            [
                (t.visitors, [_visitor(1, T0, site_id=site.id)]),
                (t.visits, [_visit(1, "v1", site.id)]),
            ],
            bump,
        )
        if not together:
            await site_state.run(conn, bump)
        alone = await insert_tables(conn, [(t.visits, [_visit(2, "v1", site.id)])], bump)
        if not alone:
            await site_state.run(conn, bump)
    assert together is (any_db.engine.dialect.name == "postgresql")
    assert alone is False
    async with any_db.write() as conn:
        assert await site_state.lock_site(conn, site.id) == before + 2
        assert await conn.scalar(sa.select(t.sites.c.recent_changes)) == "[[1,[],[]]]"
        assert await conn.scalar(sa.select(sa.func.count()).select_from(t.visits)) == 2

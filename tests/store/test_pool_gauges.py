"""/metrics counts the pools' states in the database (store/queries/gauges.py); those counts
must be what the core's rule gives number by number (`rules.pool_state`), on SQLite and on
PostgreSQL, whatever mix of leases, holds and hold times the sites have."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from calltracking.core import leases as rules
from calltracking.store import schema as t
from calltracking.store.db import Database
from calltracking.store.queries import gauges
from calltracking.store.queries.gauges import read_gauges
from calltracking.store.queries.pool_states import active_leases, all_numbers, number_snapshot
from calltracking.store.sites import Site, site_from_row
from tests.store.seed import seed_site

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


async def rule_counts(db: Database) -> Counter[str]:
    """The states as the core's rule decides them, one number at a time."""
    async with db.read() as conn:
        live = await conn.execute(sa.select(t.sites).where(t.sites.c.deleted_at.is_(None)))
        sites = {row.id: site_from_row(row) for row in live}
        leases = await active_leases(conn, None)
        rows = await conn.execute(sa.select(t.numbers).where(t.numbers.c.role == "pool"))
        return Counter(
            str(rules.pool_state(number_snapshot(row, leases.get(row.e164)), site.settings, NOW))
            for row in rows
            if (site := sites.get(row.site_id)) is not None
        )


async def fill_pool(db: Database, site: Site, first: int, count: int, rng: random.Random) -> None:
    """`count` pool numbers: some leased now, some released at times around the site's hold."""
    hold = site.settings.hold_s
    async with db.write() as conn:
        for n in range(first, first + count):
            e164 = f"+7495100{n:04d}"
            released = rng.random() < 0.6
            at = NOW - timedelta(seconds=rng.choice([0, hold - 1, hold, hold + 1, 3 * hold]))
            visitor = f"v{n:031d}"
            await conn.execute(
                t.visitors.insert().values(
                    id=visitor, site_id=site.id, created_at=NOW, last_seen_at=NOW,
                    last_activity_at=NOW, wants_number=False, bot=False,
                )
            )  # fmt: skip
            await conn.execute(
                t.numbers.insert().values(
                    e164=e164,
                    site_id=site.id,
                    role="pool",
                    added_at=NOW - timedelta(days=1),
                    last_released_at=at if released else None,
                    # a release with no holder to hold for does not hold (rules.LastRelease)
                    last_visitor_id=visitor if released and rng.random() < 0.9 else None,
                )
            )
            for lease in range(rng.choice([0, 0, 1, 2])):  # ended ones first, then maybe one open
                ended = lease == 0 and rng.random() < 0.5
                await conn.execute(
                    t.leases.insert().values(
                        id=f"l{n:027d}{lease:04d}",
                        site_id=site.id,
                        number=e164,
                        visitor_id=visitor,
                        assigned_at=NOW - timedelta(hours=2),
                        ended_at=None if not ended and lease == 0 else NOW - timedelta(hours=1),
                    )
                )


async def test_the_pool_gauges_count_what_the_rule_decides_number_by_number(
    any_db: Database,
) -> None:
    rng = random.Random(20261202)
    short = await seed_site(any_db, name="short", domains=("a.example",), hold_s=60)
    usual = await seed_site(any_db, name="usual", domains=("b.example",), defaults_base=8000)
    same = await seed_site(any_db, name="same", domains=("c.example",), defaults_base=7000)
    gone = await seed_site(any_db, name="gone", domains=("d.example",), defaults_base=6000)
    for at, site in enumerate((short, usual, same, gone)):
        await fill_pool(any_db, site, at * 100, 60, rng)
    async with any_db.write() as conn:
        await conn.execute(t.sites.update().where(t.sites.c.id == gone.id).values(deleted_at=NOW))

    expected = await rule_counts(any_db)
    assert set(expected) == {"free", "leased", "held"}  # the mix covers every state
    async with any_db.read() as conn:
        got = (await read_gauges(conn, NOW)).pool
    assert got == expected
    assert sum(got.values()) == 180  # the deleted site's numbers are left out


async def test_sites_are_counted_in_statements_of_bounded_size(
    any_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(7)
    sites = [
        await seed_site(
            any_db, name=f"s{n}", domains=(f"s{n}.example",), defaults_base=1000 * (n + 1)
        )
        for n in range(5)
    ]
    for at, site in enumerate(sites):
        await fill_pool(any_db, site, at * 100, 20, rng)
    expected = await rule_counts(any_db)
    monkeypatch.setattr(gauges, "SITES_PER_STATEMENT", 2)  # five sites: 2, 2 and 1
    async with any_db.read() as conn:
        got = (await read_gauges(conn, NOW)).pool
    assert got == expected
    assert sum(got.values()) == 100


async def test_one_numbers_state_is_its_row_of_the_full_list(any_db: Database) -> None:
    """What the operator API answers after removing a number reads that number alone."""
    site = await seed_site(any_db, hold_s=60)
    await fill_pool(any_db, site, 0, 30, random.Random(3))
    async with any_db.read() as conn:
        every = await all_numbers(conn, NOW)
        assert {n["state"] for n in every} >= {"free", "leased", "held"}
        for number in every:
            assert await all_numbers(conn, NOW, number["e164"]) == [number]
        assert await all_numbers(conn, NOW, "+74959999999") == []

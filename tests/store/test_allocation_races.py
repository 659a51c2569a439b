"""Allocation is one transaction that cannot hand a number to two visitors, however many
allocations race, on either engine and across processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter
from datetime import timedelta

import pytest
import sqlalchemy as sa

from calltracking.core.kinds import DisplayKind
from calltracking.store import schema as t
from calltracking.store.db import Database
from calltracking.store.deciders import DeciderService
from calltracking.store.visitors import Hello
from tests.store.seed import DESKTOP_UA, T0, seed_site

RACERS = 200
POOL = 20


async def _race(db: Database, site_key: str, tasks: int, offset: int) -> list[str]:
    from calltracking.store.sites import get_site_by_key

    async with db.read() as conn:
        site = await get_site_by_key(conn, site_key)
    assert site is not None
    service = DeciderService(db, node_id=f"node-{offset}", country_code="7")
    shown: list[str] = []

    async def one(i: int) -> None:
        welcome = await service.hello(
            site,
            Hello(url=f"https://shop.example/?n={offset + i}", referrer="", user_agent=DESKTOP_UA),
            T0,
        )
        shown.append(str(welcome.shown.kind) + " " + welcome.shown.e164)

    per_task = RACERS // tasks

    async def worker(w: int) -> None:
        for i in range(per_task):
            await one(w * per_task + i)

    await asyncio.gather(*(worker(w) for w in range(tasks)))
    return shown


async def _check_no_double_lease(db: Database, shown: list[str]) -> None:
    dynamic = [s for s in shown if s.startswith("dynamic")]
    untracked = [s for s in shown if s.startswith("untracked")]
    assert len(dynamic) == POOL
    assert len(set(dynamic)) == POOL, Counter(dynamic).most_common(3)
    assert len(untracked) == len(shown) - POOL
    async with db.read() as conn:
        active = (
            (await conn.execute(sa.select(t.leases.c.number).where(t.leases.c.ended_at.is_(None))))
            .scalars()
            .all()
        )
    assert len(active) == len(set(active)) == POOL


async def test_racing_allocations_on_sqlite_never_lease_a_number_twice(sqlite_db: Database) -> None:
    site = await seed_site(sqlite_db, reserve=POOL, pool_max=POOL, preempt_idle_s=10**6)
    shown = await _race(sqlite_db, site.key, tasks=8, offset=0)
    await _check_no_double_lease(sqlite_db, shown)


@pytest.mark.postgres
async def test_racing_allocations_on_postgres_never_lease_a_number_twice(pg_db: Database) -> None:
    site = await seed_site(pg_db, reserve=POOL, pool_max=POOL, preempt_idle_s=10**6)
    shown = await _race(pg_db, site.key, tasks=8, offset=0)
    await _check_no_double_lease(pg_db, shown)


RACER_SCRIPT = """
import asyncio, sys
from calltracking.store.db import Database
from tests.store.test_allocation_races import _race
async def main():
    db = Database(sys.argv[1])
    shown = await _race(db, sys.argv[2], tasks=4, offset=int(sys.argv[3]))
    await db.close()
    print("\\n".join(shown))
asyncio.run(main())
"""


@pytest.mark.postgres
async def test_two_processes_racing_on_postgres_never_lease_a_number_twice(
    pg_db: Database,
) -> None:
    site = await seed_site(pg_db, reserve=POOL, pool_max=POOL, preempt_idle_s=10**6)
    url = pg_db.url
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            RACER_SCRIPT,
            url,
            site.key,
            str(n * 1000),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in range(2)
    ]
    shown: list[str] = []
    for proc in procs:
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()[-2000:]
        shown += [line for line in out.decode().splitlines() if line]
    assert len(shown) == 2 * RACERS
    dynamic = [s for s in shown if s.startswith("dynamic")]
    assert len(dynamic) == len(set(dynamic)) == POOL


async def test_a_visitor_in_hold_gets_the_same_number_back(any_db: Database) -> None:
    site = await seed_site(any_db, reserve=3, hold_s=600)
    service = DeciderService(any_db, "n1", "7")
    first = await service.hello(
        site, Hello(url="https://shop.example/", referrer="", user_agent=DESKTOP_UA), T0
    )
    assert first.shown.kind is DisplayKind.DYNAMIC
    await service.tab_closed(site, first.visitor_id, first.tab_id, T0 + timedelta(seconds=5))
    other = await service.hello(
        site,
        Hello(url="https://shop.example/", referrer="", user_agent=DESKTOP_UA),
        T0 + timedelta(seconds=6),
    )
    assert other.shown.e164 != first.shown.e164
    back = await service.hello(
        site,
        Hello(
            url="https://shop.example/",
            referrer="",
            visitor_id=first.visitor_id,
            user_agent=DESKTOP_UA,
        ),
        T0 + timedelta(seconds=590),
    )
    assert back.shown.e164 == first.shown.e164

"""The partial unique index on active leases is the final guard against a double lease. A batch
whose engine took a number the database holds leased (written behind its back, without a
version bump) meets that index; the batch then runs again on a freshly loaded engine and the
visitor gets another number, whether the insert went through SQLAlchemy (SQLite) or straight
through asyncpg (PostgreSQL's kept connections)."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from calltracking.core.kinds import DisplayKind
from calltracking.store import schema as t
from calltracking.store.db import Database
from calltracking.store.deciders import DeciderService
from calltracking.store.ids import new_id
from calltracking.store.visitors import Hello
from tests.store.seed import DESKTOP_UA, T0, seed_site

HELLO = Hello(url="https://shop.example/", referrer="", user_agent=DESKTOP_UA)


async def test_a_batch_that_meets_a_lease_behind_its_back_replays_and_leases_another_number(
    any_db: Database,
) -> None:
    site = await seed_site(any_db, reserve=2, pool_max=2, hold_s=60)
    service = DeciderService(any_db, "node", "7")
    first = await service.hello(site, HELLO, T0)
    assert first.shown.kind is DisplayKind.DYNAMIC
    taken = first.shown.e164
    await service.tab_closed(site, first.visitor_id, first.tab_id, T0 + timedelta(seconds=1))
    later = T0 + timedelta(days=30)  # past the hold and the cool-down: the number is free again
    await service.sweep(later)
    async with any_db.write() as conn:  # a lease the engine cannot know of: no version bump
        await conn.execute(
            t.leases.insert().values(
                id=new_id(),
                site_id=site.id,
                number=taken,
                visitor_id=first.visitor_id,
                assigned_at=later,
            )
        )
    reloads = service._batches.reloads

    second = await service.hello(site, HELLO, later + timedelta(seconds=1))

    assert second.shown.kind is DisplayKind.DYNAMIC
    assert second.shown.e164 != taken
    assert service._batches.reloads > reloads  # the engine was loaded again, then decided
    async with any_db.read() as conn:
        active = (
            (await conn.execute(sa.select(t.leases.c.number).where(t.leases.c.ended_at.is_(None))))
            .scalars()
            .all()
        )
    assert sorted(active) == sorted([taken, second.shown.e164])
    await service.close()

"""What one group commit writes for visitors it created: their rows carry their state from the
insert (no second statement), a visit that got a number says so, and list conditions keep one
statement text on PostgreSQL whatever their length."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import sqlalchemy as sa

from calltracking.store import schema as t
from calltracking.store.db import Database
from calltracking.store.deciders import DeciderService
from calltracking.store.sql_lists import one_of
from calltracking.store.visitors import Hello
from tests.store.seed import DESKTOP_UA, T0, seed_site


def _hello(n: int) -> Hello:
    return Hello(
        url=f"https://shop.example/?utm_source=s{n}",
        referrer="",
        user_agent=DESKTOP_UA,
        address=f"10.0.0.{n}",
    )


async def test_visitors_created_in_one_batch_are_stored_as_the_engine_holds_them(
    any_db: Database,
) -> None:
    site = await seed_site(any_db, reserve=2, pool_max=2)
    service = DeciderService(any_db, "node", "7")
    welcomes = await asyncio.gather(*(service.hello(site, _hello(n), T0) for n in range(4)))
    assert service._batches.batches == 1  # all four in one transaction

    slot = service._batches.slots[site.id]
    assert slot.engine is not None
    async with any_db.read() as conn:
        visitors = {r.id: r for r in await conn.execute(sa.select(t.visitors))}
        visits = {r.visitor_id: r for r in await conn.execute(sa.select(t.visits))}
        leased = set((await conn.execute(sa.select(t.leases.c.visitor_id))).scalars())
    assert set(visitors) == {w.visitor_id for w in welcomes}
    assert len(leased) == 2  # a pool of two
    for w in welcomes:
        held = slot.engine.visitors[w.visitor_id]
        row = visitors[w.visitor_id]
        assert (row.wants_number, row.bot) == (held.wants, held.bot)
        assert row.waiting_since == held.waiting_since
        assert row.last_seen_at == held.last_seen_at
        assert visits[w.visitor_id].got_number is (w.visitor_id in leased)


async def test_a_batchs_rows_get_time_ordered_ids_but_its_visitors_random_ones(
    any_db: Database,
) -> None:
    """Events, visits, leases and tabs are no secret: their ids sort by the millisecond they
    were made in (store/ids.py), so new rows land at the end of their indexes. A visitor's id
    stays 128 random bits, as the contract says."""
    site = await seed_site(any_db, reserve=2, pool_max=2)
    service = DeciderService(any_db, "node", "7")
    before = time.time_ns() // 1_000_000
    welcomes = await asyncio.gather(*(service.hello(site, _hello(n), T0) for n in range(2)))
    after = time.time_ns() // 1_000_000
    async with any_db.read() as conn:
        made = {
            table.name: list((await conn.execute(sa.select(column))).scalars())
            for table, column in (
                (t.outbox, t.outbox.c.event_id),
                (t.visits, t.visits.c.id),
                (t.leases, t.leases.c.id),
                (t.tabs, t.tabs.c.id),
            )
        }
    assert all(made.values()), made  # a lease.assigned, a visit, a lease and a tab each
    for ids in made.values():
        for one in ids:
            assert before <= int(one[:12], 16) <= after, one
    for welcome in welcomes:  # a random id falls in this window about once in 2^38
        assert not before <= int(welcome.visitor_id[:12], 16) <= after


async def test_a_visit_that_gets_its_number_in_a_later_batch_is_marked_then(
    any_db: Database,
) -> None:
    site = await seed_site(any_db, reserve=1, pool_max=1, hold_s=0, preempt_idle_s=3600)
    service = DeciderService(any_db, "node", "7")
    first = await service.hello(site, _hello(1), T0)
    second = await service.hello(site, _hello(2), T0 + timedelta(seconds=1))
    await service.tab_closed(site, first.visitor_id, first.tab_id, T0 + timedelta(seconds=2))
    async with any_db.read() as conn:
        got = dict(
            (await conn.execute(sa.select(t.visits.c.visitor_id, t.visits.c.got_number))).all()
        )
        holder = (await conn.execute(
            sa.select(t.leases.c.visitor_id).where(t.leases.c.ended_at.is_(None))
        )).scalars().all()  # fmt: skip
    assert got[first.visitor_id] is True
    assert list(holder) == [second.visitor_id]
    assert got[second.visitor_id] is True


async def test_one_of_matches_exactly_the_listed_values_at_any_length(any_db: Database) -> None:
    await seed_site(any_db, reserve=0)  # its default numbers are the rows to match
    async with any_db.read() as conn:
        numbers = sorted((await conn.execute(sa.select(t.numbers.c.e164))).scalars())
        for size in (1, 2, len(numbers)):
            chosen = [*numbers[:size], "+70000000000"]  # one that matches nothing
            found = await conn.execute(
                sa.select(t.numbers.c.e164).where(one_of(conn, t.numbers.c.e164, chosen))
            )
            assert sorted(found.scalars()) == numbers[:size]


async def test_hellos_queued_while_a_batch_waits_for_its_lock_join_that_batch(
    any_db: Database,
) -> None:
    site = await seed_site(any_db, reserve=4, pool_max=4)
    service = DeciderService(any_db, "node", "7")
    holder_in, release = asyncio.Event(), asyncio.Event()

    async def hold_the_site() -> None:  # another writer has the site's lock for a while
        from calltracking.store import site_state

        async with any_db.write() as conn:
            await site_state.lock_site(conn, site.id)
            holder_in.set()
            await release.wait()

    holder = asyncio.create_task(hold_the_site())
    await holder_in.wait()
    first = asyncio.create_task(service.hello(site, _hello(1), T0))
    await asyncio.sleep(0.1)  # the first hello's batch is waiting for the lock by now
    later = [asyncio.create_task(service.hello(site, _hello(n), T0)) for n in (2, 3)]
    await asyncio.sleep(0.1)
    release.set()
    welcomes = await asyncio.gather(first, *later)
    await holder
    assert service._batches.batches == 1
    async with any_db.read() as conn:
        leased = set((await conn.execute(sa.select(t.leases.c.visitor_id))).scalars())
    assert leased == {w.visitor_id for w in welcomes}

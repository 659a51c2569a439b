"""What the group commits of a visitor's later changes write: a display that ends, a hidden tab,
and a tab's close ending its lease and releasing its number. On PostgreSQL these statements run
straight through asyncpg (store/driver_write.py); both databases must store the same values."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from calltracking.core.kinds import DisplayKind
from calltracking.store import driver_write
from calltracking.store import schema as t
from calltracking.store.db import Database
from calltracking.store.deciders import DeciderService
from calltracking.store.driver_write import KeyedUpdate, update_rows_on
from calltracking.store.kept_transactions import KeptConnections
from calltracking.store.visitors import Hello
from tests.store.seed import DESKTOP_UA, T0, numbers, seed_site

HELLO = Hello(url="https://shop.example/", referrer="", user_agent=DESKTOP_UA)


async def test_a_visitors_display_tab_lease_and_number_are_stored_as_they_change(
    any_db: Database,
) -> None:
    site = await seed_site(any_db, reserve=2, pool_max=2, show_delay_s=10, hold_s=60)
    service = DeciderService(any_db, "node", "7")
    welcome = await service.hello(site, HELLO, T0)
    assert welcome.shown.kind is DisplayKind.INITIAL
    visitor = welcome.visitor_id

    shown_at = T0 + timedelta(seconds=10)
    await service.sweep(shown_at)  # the delay is over: the number replaces the initial display
    hidden_at = T0 + timedelta(seconds=20)
    await service.visibility(welcome.tab_id, False, hidden_at)
    async with any_db.read() as conn:
        tab = (await conn.execute(sa.select(t.tabs))).one()
        lease = (await conn.execute(sa.select(t.leases))).one()
    assert (tab.id, tab.visible) == (welcome.tab_id, False)
    assert lease.ended_at is None

    closed_at = T0 + timedelta(seconds=30)
    await service.tab_closed(site, visitor, welcome.tab_id, closed_at)

    async with any_db.read() as conn:
        displays = (await conn.execute(sa.select(t.displays))).all()
        lease = (await conn.execute(sa.select(t.leases))).one()
        number = (
            await conn.execute(sa.select(t.numbers).where(t.numbers.c.e164 == lease.number))
        ).one()
        tabs = await conn.scalar(sa.select(sa.func.count()).select_from(t.tabs))
        stored = (await conn.execute(sa.select(t.visitors))).one()
    assert [(d.kind, d.started_at, d.ended_at) for d in displays] == [
        (str(DisplayKind.INITIAL), T0, shown_at)
    ]
    assert (lease.visitor_id, lease.ended_at, lease.end_reason) == (visitor, closed_at, "closed")
    assert (number.last_released_at, number.last_visitor_id, number.cooling_site_id) == (
        closed_at,
        visitor,
        site.id,
    )
    assert tabs == 0
    slot = service._batches.slots[site.id]
    assert slot.engine is not None
    held = slot.engine.visitors[visitor]
    assert (stored.last_seen_at, stored.last_activity_at) == (
        held.last_seen_at,
        held.last_activity_at or held.last_seen_at,
    )
    assert (stored.revoked_at, stored.waiting_since, stored.wants_number, stored.bot) == (
        held.revoked_at,
        held.waiting_since,
        held.wants,
        held.bot,
    )
    await service.close()


async def test_a_burst_of_closes_ends_each_visitors_lease_display_and_tab(
    any_db: Database,
) -> None:
    count = 3 * driver_write.SET_BASED_FROM
    site = await seed_site(any_db, reserve=count, pool_max=count, show_delay_s=10, hold_s=60)
    service = DeciderService(any_db, "node", "7")
    welcomes = [await service.hello(site, HELLO, T0) for _ in range(count)]
    await service.sweep(T0 + timedelta(seconds=10))  # numbers replace the initial displays
    set_based = driver_write._set_based.cache_info()
    closed_at = {w.visitor_id: T0 + timedelta(seconds=30 + n) for n, w in enumerate(welcomes)}
    # All at once: they share group commits, most of them in batches of many closes.
    await asyncio.gather(
        *(
            service.tab_closed(site, w.visitor_id, w.tab_id, closed_at[w.visitor_id])
            for w in welcomes
        )
    )
    async with any_db.read() as conn:
        leases = (await conn.execute(sa.select(t.leases))).all()
        released = {
            r.e164: r for r in (await conn.execute(sa.select(t.numbers))).all() if r.last_visitor_id
        }
        displays = (await conn.execute(sa.select(t.displays))).all()
        tabs = await conn.scalar(sa.select(sa.func.count()).select_from(t.tabs))
        stored = {r.id: r for r in (await conn.execute(sa.select(t.visitors))).all()}
    assert tabs == 0
    assert sorted((r.visitor_id, r.ended_at, r.end_reason) for r in leases) == sorted(
        (visitor, at, "closed") for visitor, at in closed_at.items()
    )
    assert {
        (n.e164, n.last_visitor_id, n.last_released_at, n.cooling_site_id)
        for n in released.values()
    } == {(r.number, r.visitor_id, r.ended_at, site.id) for r in leases}
    # Every visitor's displays are over by its close (some waited untracked for a number).
    assert {d.visitor_id for d in displays} == set(closed_at)
    assert all(d.ended_at is not None and d.ended_at <= closed_at[d.visitor_id] for d in displays)
    engine = service._batches.slots[site.id].engine
    assert engine is not None
    for visitor in closed_at:
        held = engine.visitors[visitor]
        assert (stored[visitor].last_seen_at, stored[visitor].wants_number) == (
            held.last_seen_at,
            held.wants,
        )
    if not any_db.is_sqlite:  # the batches of many closes ran as single statements
        assert (
            driver_write._set_based.cache_info().hits + driver_write._set_based.cache_info().misses
            > set_based.hits + set_based.misses
        )
    await service.close()


_RELEASE = KeyedUpdate(
    t.numbers, "e164", "b_e164", (("last_visitor_id", "visitor"), ("cooling_site_id", "site"))
)
_FIRST_RELEASE = KeyedUpdate(
    t.numbers, "e164", "b_e164", (("last_visitor_id", "visitor"),), only_null="last_visitor_id"
)


@pytest.mark.postgres
@pytest.mark.parametrize("any_db", ["postgres"], indirect=True)
@pytest.mark.parametrize("many", [False, True], ids=["per row", "one statement"])
async def test_rows_for_the_same_key_leave_what_running_them_in_order_leaves(
    any_db: Database, many: bool
) -> None:
    await seed_site(any_db, reserve=4)
    first, second = numbers(2)
    rows = [{"b_e164": first, "visitor": f"v{n}", "site": None} for n in range(3)]
    rows.append({"b_e164": second, "visitor": "only", "site": None})
    rows *= 1 if not many else driver_write.SET_BASED_FROM  # the same keys again and again
    rows = [{**row, "visitor": f"{row['visitor']}-{n}"} for n, row in enumerate(rows)]
    kept = KeptConnections(any_db)
    async with kept.transaction() as tx:
        await update_rows_on(tx.driver, tx.conn.dialect, _FIRST_RELEASE, rows)
        after_first = await _last_visitors(tx.conn)
        await update_rows_on(tx.driver, tx.conn.dialect, _RELEASE, rows)
        after_all = await _last_visitors(tx.conn)
    await kept.close()
    last = {row["b_e164"]: row["visitor"] for row in rows}
    firsts = {row["b_e164"]: row["visitor"] for row in reversed(rows)}
    assert after_first == firsts  # under only_null the first row fills it, the rest find it full
    assert after_all == last  # otherwise the last row wins


async def _last_visitors(conn: Any) -> dict[str, str]:
    got = await conn.execute(
        sa.select(t.numbers.c.e164, t.numbers.c.last_visitor_id).where(
            t.numbers.c.last_visitor_id.is_not(None)
        )
    )
    return dict(got.all())

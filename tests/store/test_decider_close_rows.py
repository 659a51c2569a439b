"""What the group commits of a visitor's later changes write: a display that ends, a hidden tab,
and a tab's close ending its lease and releasing its number. On PostgreSQL these statements run
straight through asyncpg (store/driver_write.py); both databases must store the same values."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from calltracking.core.kinds import DisplayKind
from calltracking.store import schema as t
from calltracking.store.db import Database
from calltracking.store.deciders import DeciderService
from calltracking.store.visitors import Hello
from tests.store.seed import DESKTOP_UA, T0, seed_site

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

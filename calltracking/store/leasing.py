"""Allocation applied in one transaction: snapshot the site's pool, let `core.leases.allocate`
decide, write the lease (or the exhaustion) and its outbox events.

Concurrency: on SQLite the write transaction began with BEGIN IMMEDIATE, so allocations are
serial; on PostgreSQL the account row is locked FOR UPDATE first (one account's pools and its
`max_numbers` are decided one allocation at a time, across processes). The partial unique index
on active leases would reject a second active lease on a number even if that failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core import leases as rules
from calltracking.core.events import EventKey
from calltracking.core.kinds import LeaseEndReason
from calltracking.store import schema as t
from calltracking.store.outbox import emit, new_id
from calltracking.store.sites import Site

RESERVE_CANDIDATES = 8


@dataclass(frozen=True, slots=True)
class LeaseRow:
    id: str
    site_id: str
    number: str
    visitor_id: str
    visit_id: str | None
    assigned_at: datetime
    ended_at: datetime | None = None
    end_reason: str | None = None

    def to_event(self) -> dict[str, object]:
        return {
            "id": self.id,
            "site_id": self.site_id,
            "number": self.number,
            "visitor": self.visitor_id,
            "started_at": self.assigned_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "reason": self.end_reason,
        }


def _lease(row: sa.Row[tuple[object, ...]] | None) -> LeaseRow | None:
    if row is None:
        return None
    m = row._mapping
    return LeaseRow(
        id=m["id"],
        site_id=m["site_id"],
        number=m["number"],
        visitor_id=m["visitor_id"],
        visit_id=m["visit_id"],
        assigned_at=m["assigned_at"],
        ended_at=m["ended_at"],
        end_reason=m["end_reason"],
    )


async def active_lease_of(conn: AsyncConnection, visitor_id: str) -> LeaseRow | None:
    row = (
        await conn.execute(
            sa.select(t.leases).where(
                t.leases.c.visitor_id == visitor_id, t.leases.c.ended_at.is_(None)
            )
        )
    ).first()
    return _lease(row)


async def lock_account(conn: AsyncConnection, account_id: str) -> None:
    if conn.dialect.name == "postgresql":
        await conn.execute(
            sa.select(t.accounts.c.id).where(t.accounts.c.id == account_id).with_for_update()
        )


async def snapshot(
    conn: AsyncConnection, site: Site, now: datetime
) -> tuple[list[rules.NumberSnapshot], list[rules.NumberSnapshot], int]:
    """The site's pool, the reserve, and how many numbers the account may still take."""
    active = {
        r.number: rules.ActiveLease(r.id, r.visitor_id, r.last_activity_at)
        for r in await conn.execute(
            sa.select(
                t.leases.c.id,
                t.leases.c.number,
                t.leases.c.visitor_id,
                t.visitors.c.last_activity_at,
            )
            .join(t.visitors, t.visitors.c.id == t.leases.c.visitor_id)
            .where(t.leases.c.site_id == site.id, t.leases.c.ended_at.is_(None))
        )
    }
    n = t.numbers.c
    pool_rows = await conn.execute(
        sa.select(t.numbers).where(n.site_id == site.id, n.role.in_(("pool", "static")))
    )
    # Growth takes one reserve number; the rules would pick the first of these, so a few
    # candidates (never one cooling for another site) are all the snapshot needs.
    reserve_rows = await conn.execute(
        sa.select(t.numbers)
        .where(
            n.site_id.is_(None),
            sa.or_(
                n.cooling_until.is_(None),
                n.cooling_site_id.is_(None),
                n.cooling_site_id == site.id,
                n.cooling_until <= now,
            ),
        )
        .order_by(n.e164)
        .limit(RESERVE_CANDIDATES)
    )
    rows = [*pool_rows, *reserve_rows]
    pool: list[rules.NumberSnapshot] = []
    reserve: list[rules.NumberSnapshot] = []
    for r in rows:
        release = None
        if r.last_released_at is not None and r.last_visitor_id is not None:
            release = rules.LastRelease(
                r.last_visitor_id, r.cooling_site_id or site.id, r.last_released_at
            )
        snap = rules.NumberSnapshot(
            e164=r.e164,
            site_id=r.site_id,
            static=r.role == "static",
            lease=active.get(r.e164),
            last_release=release if r.site_id is not None else None,
            cooling_site_id=r.cooling_site_id,
            cooling_until=r.cooling_until,
        )
        (pool if r.site_id is not None else reserve).append(snap)
    in_use = (
        sa.select(sa.func.count())
        .select_from(t.numbers.join(t.sites, t.numbers.c.site_id == t.sites.c.id))
        .where(t.sites.c.account_id == site.account_id)  # pool, static and defaults
        .scalar_subquery()
    )
    capacity = await conn.scalar(
        sa.select(t.accounts.c.max_numbers - in_use).where(t.accounts.c.id == site.account_id)
    )
    return pool, reserve, int(capacity or 0)


async def allocate(
    conn: AsyncConnection, site: Site, visitor_id: str, visit_id: str | None, now: datetime
) -> tuple[LeaseRow | None, list[str]]:
    """Give `visitor_id` a number. Returns (the lease or None when exhausted, visitor ids whose
    lease was taken back under pressure)."""
    if conn.dialect.name == "postgresql":
        # Another transaction (the visitor's other tab) may have leased before we got the lock;
        # SQLite writers are serial, so the caller's own check still holds there.
        await lock_account(conn, site.account_id)
        own = await active_lease_of(conn, visitor_id)
        if own is not None:
            return own, []
    pool, reserve, capacity = await snapshot(conn, site, now)
    decision = rules.allocate(
        site_id=site.id,
        visitor_id=visitor_id,
        pool=pool,
        reserve=reserve,
        settings=site.settings,
        account_capacity=capacity,
        now=now,
    )
    if isinstance(decision, rules.Exhausted):
        return None, []
    preempted: list[str] = []
    if decision.source is rules.Source.GROW:
        grown = await conn.execute(
            t.numbers.update()
            .where(t.numbers.c.e164 == decision.e164, t.numbers.c.site_id.is_(None))
            .values(
                site_id=site.id,
                role="pool",
                cooling_site_id=None,
                cooling_until=None,
                last_released_at=None,
                last_visitor_id=None,
            )
        )
        if grown.rowcount != 1:
            return None, []  # taken by another site meanwhile; the caller may retry
    if decision.preempted_lease_id is not None:
        victim = await end_lease(conn, decision.preempted_lease_id, LeaseEndReason.PREEMPTED, now)
        if victim is not None:
            preempted.append(victim.visitor_id)
            await conn.execute(
                t.visitors.update()
                .where(t.visitors.c.id == victim.visitor_id)
                .values(revoked_at=now)
            )
    lease = LeaseRow(new_id(), site.id, decision.e164, visitor_id, visit_id, now)
    await conn.execute(
        t.leases.insert().values(
            id=lease.id,
            site_id=site.id,
            number=lease.number,
            visitor_id=visitor_id,
            visit_id=visit_id,
            assigned_at=now,
        )
    )
    if visit_id is not None:
        await conn.execute(
            t.visits.update().where(t.visits.c.id == visit_id).values(got_number=True)
        )
    await emit(conn, EventKey.LEASE_ASSIGNED, lease.to_event(), now)
    return lease, preempted


async def end_lease(
    conn: AsyncConnection, lease_id: str, reason: LeaseEndReason, now: datetime
) -> LeaseRow | None:
    """End an active lease (the hold starts); None when it had ended already."""
    result = await conn.execute(
        t.leases.update()
        .where(t.leases.c.id == lease_id, t.leases.c.ended_at.is_(None))
        .values(ended_at=now, end_reason=str(reason))
    )
    if result.rowcount != 1:
        return None
    row = (await conn.execute(sa.select(t.leases).where(t.leases.c.id == lease_id))).first()
    lease = _lease(row)
    assert lease is not None
    await conn.execute(
        t.numbers.update()
        .where(t.numbers.c.e164 == lease.number)
        .values(
            last_released_at=now, last_visitor_id=lease.visitor_id, cooling_site_id=lease.site_id
        )
    )
    await emit(conn, EventKey.LEASE_RELEASED, lease.to_event(), now)
    return lease


async def record_exhaustion(
    conn: AsyncConnection, site: Site, visitor_id: str, now: datetime
) -> None:
    await conn.execute(
        t.pool_events.insert().values(
            site_id=site.id, kind="exhausted", visitor_id=visitor_id, at=now
        )
    )
    await emit(conn, EventKey.POOL_EXHAUSTED, {"site_id": site.id, "visitor": visitor_id}, now)

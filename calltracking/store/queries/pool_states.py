"""Every number and a site's pool, each with its state, as the operator API shows them.

Rules:
- A site's pool and static numbers are free | leased | held | static (`core.leases.pool_state`);
  numbers of no site are `reserve`, or `cooling` until their cooldown ends; `default` numbers
  stay `default`.
- Reads only: nothing here changes a number or a lease.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core import leases as rules
from calltracking.core.kinds import PoolState
from calltracking.core.settings import SiteSettings
from calltracking.store import schema as t
from calltracking.store.sites import Site


async def active_leases(conn: AsyncConnection, site_id: str | None) -> dict[str, Any]:
    query = sa.select(t.leases).where(t.leases.c.ended_at.is_(None))
    if site_id is not None:
        query = query.where(t.leases.c.site_id == site_id)
    return {r.number: r for r in await conn.execute(query)}


def number_snapshot(row: Any, lease: Any) -> rules.NumberSnapshot:
    release = None
    if row.last_released_at is not None and row.last_visitor_id is not None:
        release = rules.LastRelease(
            row.last_visitor_id, row.cooling_site_id or row.site_id, row.last_released_at
        )
    active = None
    if lease is not None:
        active = rules.ActiveLease(lease.id, lease.visitor_id, lease.assigned_at)
    return rules.NumberSnapshot(
        e164=row.e164,
        site_id=row.site_id,
        static=row.role == "static",
        lease=active,
        last_release=release,
        cooling_site_id=row.cooling_site_id,
        cooling_until=row.cooling_until,
    )


async def site_pool(conn: AsyncConnection, site: Site, now: datetime) -> list[dict[str, Any]]:
    """The site's pool and static numbers, each with its state (free|leased|held|static)."""
    leases = await active_leases(conn, site.id)
    rows = await conn.execute(
        sa.select(t.numbers)
        .where(t.numbers.c.site_id == site.id, t.numbers.c.role.in_(("pool", "static")))
        .order_by(t.numbers.c.e164)
    )
    result = []
    for row in rows:
        lease = leases.get(row.e164)
        state = rules.pool_state(number_snapshot(row, lease), site.settings, now)
        visitor = lease.visitor_id if lease is not None else None
        if state is PoolState.HELD:
            visitor = row.last_visitor_id
        result.append(
            {
                "e164": row.e164,
                "state": str(state),
                "label": row.static_label,
                "visitor": visitor,
                "leased_since": lease.assigned_at.isoformat() if lease is not None else None,
                "last_released_at": _iso(row.last_released_at),
            }
        )
    return result


async def all_numbers(
    conn: AsyncConnection, now: datetime, e164: str | None = None
) -> list[dict[str, Any]]:
    """Every number (or just `e164`): reserve (`reserve` or `cooling`), pools (pool states) and
    `default`."""
    numbers = sa.select(t.numbers).order_by(t.numbers.c.e164)
    if e164 is None:
        leases = await active_leases(conn, None)
    else:
        numbers = numbers.where(t.numbers.c.e164 == e164)
        open_lease = sa.select(t.leases).where(
            t.leases.c.number == e164, t.leases.c.ended_at.is_(None)
        )
        leases = {r.number: r for r in await conn.execute(open_lease)}
    sites = {r.id: r for r in await conn.execute(sa.select(t.sites.c.id, t.sites.c.settings))}
    result = []
    for row in await conn.execute(numbers):
        if row.site_id is None:
            cooling = row.cooling_until is not None and now < row.cooling_until
            state = "cooling" if cooling else "reserve"
        elif row.role == "default":
            state = "default"
        else:
            hold_s = int(sites[row.site_id].settings.get("hold_s", SiteSettings().hold_s))
            settings = replace(SiteSettings(), hold_s=hold_s)
            state = str(rules.pool_state(number_snapshot(row, leases.get(row.e164)), settings, now))
        result.append(
            {
                "e164": row.e164,
                "state": state,
                "site_id": row.site_id,
                "label": row.static_label,
                "cooling_site_id": row.cooling_site_id if state == "cooling" else None,
                "cooling_until": _iso(row.cooling_until) if state == "cooling" else None,
                "last_released_at": _iso(row.last_released_at),
            }
        )
    return result


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def pool_size(conn: AsyncConnection, site_id: str) -> int:
    value = await conn.scalar(
        sa.select(sa.func.count())
        .select_from(t.numbers)
        .where(t.numbers.c.site_id == site_id, t.numbers.c.role == "pool")
    )
    return int(value or 0)

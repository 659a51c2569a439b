"""A site's PATCH and DELETE: names, defaults, static numbers, pool size, deletion.

Rules:
- Callers have checked ownership; every change runs inside the caller's one write transaction.
- A number leaving a site goes back to the reserve, cooling down, when it came from there; a
  number the account brought itself leaves the system (`number_moves.drop_number`).
- A change that makes the account hold more than `max_numbers` (pool, static and defaults) is a
  409 Conflict; the caller's transaction then changes nothing.
- A lowered `pool_max` shrinks the pool free numbers first; leased numbers stay.
- A deleted site's active leases end `site_deleted`; its calls stay.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core import leases as rules
from calltracking.core.errors import Conflict
from calltracking.core.kinds import LeaseEndReason
from calltracking.core.settings import SiteSettings, settings_to_json
from calltracking.store import schema as t
from calltracking.store import site_state
from calltracking.store.leasing import end_lease
from calltracking.store.number_moves import (
    account_numbers_in_use,
    check_account_capacity,
    claim_number,
    drop_number,
    release_to_reserve,
)
from calltracking.store.queries.pool_states import active_leases, number_snapshot, pool_size
from calltracking.store.sites import Site, get_site


async def update_site(
    conn: AsyncConnection,
    site: Site,
    *,
    name: str | None,
    domains: Sequence[str] | None,
    defaults: Mapping[str, str] | None,
    settings: SiteSettings,
    now: datetime,
) -> Site:
    """Apply a PATCH: names, defaults and static numbers claimed or released, the pool shrunk to
    a lowered `pool_max` (free numbers first; leased ones stay)."""
    new_defaults = {str(k): v for k, v in site.defaults.items()}
    if defaults is not None:
        new_defaults = dict(defaults)
    for e164 in settings.static:
        if e164 in new_defaults.values():
            raise Conflict(f"settings.static.{e164}: {e164} is one of the site's default numbers")
    held_before = await account_numbers_in_use(conn, site.account_id)
    for e164 in sorted(set(site.settings.static) - set(settings.static)):
        await release_to_reserve(conn, site, e164, now)
    for e164, label in settings.static.items():
        field = f"settings.static.{e164}"
        await claim_number(conn, e164, site, "static", label, field, now)
    if defaults is not None:
        for kind, e164 in new_defaults.items():
            await claim_number(conn, e164, site, "default", None, f"defaults.{kind}", now)
        old = set(site.defaults.values()) - set(new_defaults.values()) - set(settings.static)
        await _drop(conn, site, sorted(old), now)
    await check_account_capacity(conn, site.account_id, held_before)
    values: dict[str, Any] = {"settings": settings_to_json(settings, mask_secrets=False)}
    if name is not None:
        values["name"] = name
    if domains is not None:
        values["domains"] = list(domains)
    if defaults is not None:
        values.update({f"default_{kind}": e164 for kind, e164 in new_defaults.items()})
    await conn.execute(t.sites.update().where(t.sites.c.id == site.id).values(**values))
    await site_state.bump(conn, site.id)
    updated = await get_site(conn, site.id)
    assert updated is not None
    await _shrink_pool(conn, updated, now)
    return updated


async def _shrink_pool(conn: AsyncConnection, site: Site, now: datetime) -> None:
    excess = await pool_size(conn, site.id) - site.settings.pool_max
    if excess <= 0:
        return
    leases = await active_leases(conn, site.id)
    rows = await conn.execute(
        sa.select(t.numbers).where(t.numbers.c.site_id == site.id, t.numbers.c.role == "pool")
    )
    idle = [number_snapshot(r, None) for r in rows if r.e164 not in leases]

    def order(n: rules.NumberSnapshot) -> tuple[bool, float, str]:
        released = n.last_release.ended_at.timestamp() if n.last_release else 0.0
        return (rules.in_hold(n, site.settings, now), released, n.e164)

    for number in sorted(idle, key=order)[:excess]:
        await release_to_reserve(conn, site, number.e164, now)


async def _drop(conn: AsyncConnection, site: Site, e164s: Sequence[str], now: datetime) -> int:
    """Numbers leave the site (`drop_number`); returns how many went back to the reserve."""
    returned = 0
    for row in await conn.execute(sa.select(t.numbers).where(t.numbers.c.e164.in_(list(e164s)))):
        returned += await drop_number(conn, site, row, now)
    return returned


async def delete_site(conn: AsyncConnection, site: Site, now: datetime) -> dict[str, int]:
    """Mark the site deleted, end its active leases (`site_deleted`), return its numbers from the
    reserve there (cooling down) and remove the ones its account brought; its calls stay."""
    await conn.execute(t.sites.update().where(t.sites.c.id == site.id).values(deleted_at=now))
    await site_state.bump(conn, site.id)
    ended = 0
    for lease in (await active_leases(conn, site.id)).values():
        ended += await end_lease(conn, lease.id, LeaseEndReason.SITE_DELETED, now) is not None
    numbers = list(
        (
            await conn.execute(sa.select(t.numbers.c.e164).where(t.numbers.c.site_id == site.id))
        ).scalars()
    )
    returned = await _drop(conn, site, numbers, now)
    await conn.execute(
        t.visitors.update().where(t.visitors.c.site_id == site.id).values(waiting_since=None)
    )
    return {
        "leases_ended": ended,
        "numbers_returned": returned,
        "numbers_removed": len(numbers) - returned,
    }

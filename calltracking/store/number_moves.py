"""Numbers moving between the reserve, pools, defaults and static numbers.

Rules (CONTRACT.md "Numbers"):
- A number is in exactly one place: the reserve (site_id NULL), one site's pool (role `pool` or
  `static`) or one site's defaults (role `default`). Moving numbers is all or nothing.
- Only the admin adds numbers to the shared reserve (`add_to_reserve`). A site may name default
  or static numbers new to the system: they are its account's own (`owner_account_id`) and,
  when the site drops them, they leave the system (the row is deleted), never the reserve.
- A number taken from the reserve goes back to it, cooling down for its site's `cooldown_days`:
  a pool number from its last release, a default or static one (shown until now) from now;
  meanwhile only that site may take it back.
- A number held anywhere else (another site, another account) is a 409 Conflict.
- An account's `max_numbers` counts every number it holds: pool, static and defaults.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core.errors import Conflict, InvalidInput, NotFound
from calltracking.core.numbers import is_e164
from calltracking.store import site_state
from calltracking.store.driver_sql import driver_text
from calltracking.store.schema import accounts, leases, numbers

if TYPE_CHECKING:
    from calltracking.store.sites import Site


async def add_to_reserve(
    conn: AsyncConnection, values: Sequence[str], now: datetime
) -> tuple[int, int]:
    """Add numbers to the reserve, all or nothing; returns (added, already present)."""
    for i, value in enumerate(values):
        if not is_e164(value):
            raise InvalidInput(f"numbers[{i}]", f"{value!r} is not an E.164 number")
    unique = list(dict.fromkeys(values))
    existing = set(
        (await conn.execute(sa.select(numbers.c.e164).where(numbers.c.e164.in_(unique)))).scalars()
    )
    fresh = [n for n in unique if n not in existing]
    if fresh:
        await conn.execute(
            numbers.insert(), [{"e164": n, "role": "reserve", "added_at": now} for n in fresh]
        )
    return len(fresh), len(unique) - len(fresh)


@dataclass(frozen=True, slots=True)
class NumberOwner:
    """The site a number is claimed for, and the account that then holds it."""

    site_id: str
    account_id: str


async def claim_for(
    conn: AsyncConnection,
    e164: str,
    owner: NumberOwner,
    role: str,
    label: str | None,
    field: str,
    now: datetime,
) -> None:
    """Put a number into this site as `role`: from the reserve, new (then the account's own),
    or already the site's; Conflict naming `field` when it is held anywhere else."""
    site_id = owner.site_id
    row = (await conn.execute(sa.select(numbers).where(numbers.c.e164 == e164))).first()
    if row is None:
        await conn.execute(
            numbers.insert().values(
                e164=e164,
                site_id=site_id,
                role=role,
                static_label=label,
                added_at=now,
                owner_account_id=owner.account_id,
            )
        )
        await site_state.bump(conn, site_id)
        return
    if row.site_id == site_id and row.role == role == "default":
        return
    if row.site_id is not None and row.site_id != site_id:
        raise Conflict(f"{field}: {e164} belongs to another site")
    if row.owner_account_id not in (None, owner.account_id):
        raise Conflict(f"{field}: {e164} belongs to another account")
    if row.site_id is None and _cooling_for_other(row, site_id, now):
        raise Conflict(f"{field}: {e164} is cooling down from another site")
    if row.site_id == site_id and row.role == "pool" and await _leased_now(conn, e164):
        raise Conflict(f"{field}: {e164} is leased now")
    await conn.execute(
        numbers.update()
        .where(numbers.c.e164 == e164)
        .values(site_id=site_id, role=role, static_label=label)
    )
    await site_state.bump(conn, site_id)


async def _leased_now(conn: AsyncConnection, e164: str) -> bool:
    active = await conn.scalar(
        sa.select(sa.func.count())
        .select_from(leases)
        .where(leases.c.number == e164, leases.c.ended_at.is_(None))
    )
    return bool(active)


def _cooling_for_other(row: Any, site_id: str, now: datetime) -> bool:
    return (
        row.cooling_until is not None
        and row.cooling_site_id not in (None, site_id)
        and now < row.cooling_until
    )


async def release_to_reserve(conn: AsyncConnection, site: Site, e164: str, now: datetime) -> bool:
    """Drop a pool or static number of the site (`drop_number`); NotFound when it is not one,
    Conflict while it is leased. Returns True when it went back to the reserve."""
    row = (await conn.execute(sa.select(numbers).where(numbers.c.e164 == e164))).first()
    if row is None or row.site_id != site.id or row.role not in ("pool", "static"):
        raise NotFound(f"{e164} is not in this site's pool")
    if await _leased_now(conn, e164):
        raise Conflict(f"{e164} is leased now; it can be removed once released")
    return await drop_number(conn, site, row, now)


async def drop_number(conn: AsyncConnection, site: Site, row: Any, now: datetime) -> bool:
    """A number leaves the site. The account's own number leaves the system (False); one taken
    from the reserve goes back to it cooling for the site's `cooldown_days` (True): a pool
    number from its last release, a default or static one from now, as it was shown until now."""
    await site_state.bump(conn, site.id)
    if row.owner_account_id is not None:
        await conn.execute(numbers.delete().where(numbers.c.e164 == row.e164))
        return False
    since = (row.last_released_at or now) if row.role == "pool" else now
    await conn.execute(
        numbers.update()
        .where(numbers.c.e164 == row.e164)
        .values(
            site_id=None,
            role="reserve",
            static_label=None,
            cooling_site_id=site.id,
            cooling_until=since + timedelta(days=site.settings.cooldown_days),
        )
    )
    return True


async def move_from_reserve(
    conn: AsyncConnection,
    site: Site,
    *,
    count: int | None,
    wanted: Sequence[str] | None,
    account_capacity: int,
    now: datetime,
) -> list[str]:
    """Move reserve numbers into the pool, all or nothing; 409 naming what could not be had."""
    if wanted is not None:
        for i, value in enumerate(wanted):
            if not is_e164(value):
                raise InvalidInput(f"numbers[{i}]", f"{value!r} is not an E.164 number")
        if len(wanted) > account_capacity:
            raise Conflict(f"the account may take {account_capacity} more numbers")
        rows = {
            r.e164: r
            for r in await conn.execute(sa.select(numbers).where(numbers.c.e164.in_(list(wanted))))
        }
        problems = []
        for value in wanted:
            row = rows.get(value)
            if row is None:
                problems.append(f"{value} is not in the reserve")
            elif row.site_id is not None:
                problems.append(f"{value} is in a pool or defaults already")
            elif _cooling_for_other(row, site.id, now):
                problems.append(f"{value} is cooling down from another site")
        if problems:
            raise Conflict("; ".join(problems))
        chosen = list(wanted)
    else:
        assert count is not None
        if count > account_capacity:
            raise Conflict(f"the account may take {account_capacity} more numbers")
        candidates = await conn.execute(
            sa.select(numbers).where(numbers.c.site_id.is_(None)).order_by(numbers.c.e164)
        )
        chosen = [r.e164 for r in candidates if not _cooling_for_other(r, site.id, now)][:count]
        if len(chosen) < count:
            raise Conflict(f"only {len(chosen)} reserve numbers can be had, {count} asked")
    if chosen:
        result = await conn.execute(
            numbers.update()
            .where(numbers.c.e164.in_(chosen), numbers.c.site_id.is_(None))
            .values(site_id=site.id, role="pool", cooling_site_id=None, cooling_until=None)
        )
        if result.rowcount != len(chosen):
            raise Conflict("some numbers were taken meanwhile; try again")
        await site_state.bump(conn, site.id)
    return chosen


async def account_numbers_in_use(conn: AsyncConnection, account_id: str) -> int:
    """Every number the account's sites hold: pool, static and defaults. On PostgreSQL the
    account row is locked first (as allocation does), so two changes of one account cannot both
    pass `max_numbers` on counts that ignore each other; SQLite writers are serial anyway."""
    if conn.dialect.name == "postgresql":
        await conn.execute(
            sa.select(accounts.c.id).where(accounts.c.id == account_id).with_for_update()
        )
    return await _numbers_held(conn, account_id)


async def account_room(conn: AsyncConnection, account_id: str, *, lock: bool = True) -> int:
    """How many more numbers the account may hold (negative: over its `max_numbers`; 0 for an
    account that is gone), under the same lock as `account_numbers_in_use`. The lock and the
    limit come in one statement: a locking read returns the row as its last holder committed.
    `lock=False` only estimates (the caller re-checks under the lock before it commits)."""
    # Fixed texts through the driver (driver_sql.py): a growing group commit runs both.
    lock = lock and conn.dialect.name == "postgresql"
    statement = _ROOM_PG if lock else _ROOM
    limit = (await conn.exec_driver_sql(driver_text(conn, statement), (account_id,))).scalar()
    if limit is None:
        return 0
    return int(limit) - await _numbers_held(conn, account_id)


_ROOM = "SELECT max_numbers FROM accounts WHERE id = {}"
_ROOM_PG = _ROOM + " FOR UPDATE"
_HELD = (
    "SELECT count(*) FROM numbers JOIN sites ON numbers.site_id = sites.id "
    "WHERE sites.account_id = {}"
)


async def _numbers_held(conn: AsyncConnection, account_id: str) -> int:
    value = (await conn.exec_driver_sql(driver_text(conn, _HELD), (account_id,))).scalar()
    return int(value or 0)


async def check_account_capacity(conn: AsyncConnection, account_id: str, held_before: int) -> None:
    """Conflict when a change made the account hold more numbers than its `max_numbers`
    (a change that holds fewer or as many as before always passes)."""
    limit = await _max_numbers(conn, account_id)
    held = await account_numbers_in_use(conn, account_id)
    if held > limit and held > held_before:
        raise Conflict(
            f"the account would hold {held} numbers (pool, static and defaults); "
            f"its max_numbers is {limit}"
        )


async def _max_numbers(conn: AsyncConnection, account_id: str) -> int:
    value = await conn.scalar(sa.select(accounts.c.max_numbers).where(accounts.c.id == account_id))
    return int(value or 0)


async def claim_number(
    conn: AsyncConnection,
    e164: str,
    site: Site,
    role: str,
    label: str | None,
    field: str,
    now: datetime,
) -> None:
    """Put a number into a site as `role` (`default` or `static`), as site creation does:
    from the reserve, new, or already the site's; Conflict naming `field` otherwise."""
    await claim_for(conn, e164, NumberOwner(site.id, site.account_id), role, label, field, now)


async def top_up_pool(conn: AsyncConnection, site: Site, now: datetime) -> list[str]:
    """Keep at least `pool_min` numbers in the pool, taking what the reserve and the account's
    `max_numbers` allow (best effort: fewer when fewer can be had)."""
    have = await conn.scalar(
        sa.select(sa.func.count())
        .select_from(numbers)
        .where(numbers.c.site_id == site.id, numbers.c.role == "pool")
    )
    missing = site.settings.pool_min - int(have or 0)
    if missing <= 0:
        return []
    capacity = await account_room(conn, site.account_id)
    candidates = await conn.execute(
        sa.select(numbers).where(numbers.c.site_id.is_(None)).order_by(numbers.c.e164)
    )
    free = [r.e164 for r in candidates if not _cooling_for_other(r, site.id, now)]
    take = free[: max(0, min(missing, capacity))]
    if take:
        await move_from_reserve(
            conn, site, count=None, wanted=take, account_capacity=capacity, now=now
        )
    return take

"""Loading a site engine's state from the database: the pool with its leases and releases,
the visitors that have open tabs or a lease, and, on demand, a returning visitor.

Queries load state; they decide nothing (the engine does). Everything the engine remembers
between events is either here or derived from it, so a restarted node, or a node that lost
the site's lock to another for a while, resumes exactly where the database says.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core.engine import SiteEngine, SiteRules, Visitor
from calltracking.core.engine.parts import holder_part, ids_in_part, part_of, part_settings
from calltracking.core.engine.pool import Lease, Number
from calltracking.core.kinds import DisplayKind
from calltracking.core.leases import NumberSnapshot, is_cooling_for
from calltracking.core.traffic import TrafficSource
from calltracking.store import schema as t
from calltracking.store.number_moves import account_room
from calltracking.store.sites import Site
from calltracking.store.sql_lists import one_of

RESERVE_CANDIDATES = 8
RESERVE_PAGES = 8  # pages a split site's part reads at most for its own reserve numbers
CHUNK = 500
_EPOCH = datetime.min.replace(tzinfo=UTC)


def rules_of(site: Site, part: int | None = None) -> SiteRules:
    """The site's rules, as one part of a split site applies them (its share of the pool)."""
    settings = site.settings
    if part is not None:
        settings = part_settings(settings, part, site.decision_parts)
    return SiteRules(site.id, settings, dict(site.defaults), tuple(site.domains))


async def load_engine(
    conn: AsyncConnection,
    site: Site,
    now: datetime,
    ids: Callable[[], str],
    record_ids: Callable[[], str] | None = None,
    *,
    part: int | None = None,
) -> SiteEngine:
    """The site's engine as the database holds it, or its part `part`'s when it is split;
    `ids` make its visitors' ids (redrawn to fall in the part), `record_ids` its visits' and
    leases' (SiteEngine)."""
    parts = site.decision_parts if part is not None else 1
    engine = SiteEngine(
        rules_of(site, part),
        ids=ids_in_part(ids, part or 0, parts),
        record_ids=record_ids,
    )
    numbers = await _pool_numbers(conn, site.id, part=part or 0, parts=parts)
    leased_first = sorted(numbers.values(), key=_activity_order)
    for number in leased_first:  # leases keep their activity order
        engine.pool.add(number)
    v = t.visitors.c
    with_tabs = (
        await conn.execute(
            sa.select(t.tabs.c.visitor_id)
            .join(t.visitors, v.id == t.tabs.c.visitor_id)
            .where(v.site_id == site.id)
            .distinct()
        )
    ).scalars()
    leased = {number.lease.visitor_id for number in numbers.values() if number.lease}
    present = leased | {visitor for visitor in with_tabs if part_of(visitor, parts) == (part or 0)}
    await restore_visitors(conn, engine, present, now)
    await offer_reserve(conn, engine, site, now, part=part)
    return engine


async def catch_up(
    conn: AsyncConnection,
    engine: SiteEngine,
    site: Site,
    numbers: Collection[str],
    visitors: Collection[str],
    now: datetime,
) -> None:
    """Bring a loaded engine level with the store after other writers changed these numbers
    and visitors (recent_changes.py): each is read as `load_engine` would read it, the rest of
    the engine stays as it is."""
    changed = set(visitors)
    e164s = set(numbers)  # every lease begun or ended is there, with its number
    # A changed visitor's lease that did not begin or end has a new last activity.
    if changed:
        le = t.leases.c
        e164s |= set(
            (
                await conn.execute(
                    sa.select(le.number).where(
                        le.site_id == site.id,
                        le.ended_at.is_(None),
                        one_of(conn, le.visitor_id, changed),
                    )
                )
            ).scalars()
        )
    fresh = await _pool_numbers(conn, site.id, e164s) if e164s else {}
    for e164 in sorted(e164s):
        engine.pool.replace(e164, fresh.get(e164))
    engine.pool.reorder_leases()
    for visitor_id in changed:
        engine.forget(visitor_id)
    holders = {n.lease.visitor_id for n in fresh.values() if n.lease is not None}
    await restore_visitors(conn, engine, changed | holders, now)
    engine.reserve = []  # the other writer may have grown from it: offered afresh when needed


async def _pool_numbers(
    conn: AsyncConnection,
    site_id: str,
    only: Collection[str] | None = None,
    *,
    part: int = 0,
    parts: int = 1,
) -> dict[str, Number]:
    """The site's pool and static numbers (or those of `only` still there), with their active
    leases and each lease's last activity; with `parts` > 1, only those of part `part`
    (`holder_part`), the others never built: a node deciding one part holds only its own."""
    le, v = t.leases.c, t.visitors.c
    leases = (
        sa.select(
            le.id,
            le.number,
            le.visitor_id,
            le.visit_id,
            le.assigned_at,
            le.address,
            v.last_activity_at,
        )
        .join(t.visitors, v.id == le.visitor_id)
        .where(le.site_id == site_id, le.ended_at.is_(None))
    )
    if only is not None:
        leases = leases.where(one_of(conn, le.number, only))
    leased = {row.number: row for row in await conn.execute(leases)}
    n = t.numbers.c
    query = sa.select(n.e164, n.role, n.last_visitor_id, n.last_released_at).where(
        n.site_id == site_id, n.role.in_(("pool", "static"))
    )
    if only is not None:
        query = query.where(one_of(conn, n.e164, only))
    numbers: dict[str, Number] = {}
    for r in await conn.execute(query):
        row = leased.get(r.e164)
        holder = row.visitor_id if row is not None else None
        if parts > 1 and holder_part(r.e164, r.last_visitor_id, holder, parts) != part:
            continue
        number = Number(
            r.e164,
            static=r.role == "static",
            last_visitor_id=r.last_visitor_id,
            released_at=r.last_released_at,
        )
        if row is not None:
            number.lease = Lease(
                row.id,
                row.number,
                row.visitor_id,
                row.visit_id,
                row.address or "",
                row.assigned_at,
                # A waiter's lease starts its idle time when assigned, not at the visitor's
                # last activity before it (as the engine that assigned it counts).
                max(row.assigned_at, row.last_activity_at),
            )
        numbers[r.e164] = number
    return numbers


def _activity_order(number: Number) -> tuple[bool, datetime]:
    """Leased numbers first, by their lease's last activity (idlest first)."""
    if number.lease is None:
        return (True, _EPOCH)
    return (False, number.lease.last_activity_at)


async def restore_visitors(
    conn: AsyncConnection, engine: SiteEngine, visitor_ids: Iterable[str], now: datetime
) -> None:
    """Put these visitors (as the store has them) into the engine; unknown ids are skipped."""
    ids = sorted(set(visitor_ids) - engine.visitors.keys())
    for start in range(0, len(ids), CHUNK):
        for visitor in await _visitors(conn, engine, ids[start : start + CHUNK]):
            engine.restore(visitor, now)


async def _visitors(conn: AsyncConnection, engine: SiteEngine, ids: Sequence[str]) -> list[Visitor]:
    v, vi, tb, d = t.visitors.c, t.visits.c, t.tabs.c, t.displays.c
    rows = await conn.execute(
        sa.select(t.visitors).where(v.id.in_(ids), v.site_id == engine.rules.site_id)
    )
    found = {r.id: r for r in rows}
    if not found:
        return []
    visits = {}
    for r in await conn.execute(
        sa.select(
            vi.id,
            vi.visitor_id,
            vi.started_at,
            vi.last_seen_at,
            vi.source,
            vi.medium,
            vi.campaign,
            vi.tracked,
        )
        .where(vi.visitor_id.in_(list(found)))
        .order_by(vi.started_at)
    ):
        visits[r.visitor_id] = r  # the latest wins
    tabs: dict[str, dict[str, bool]] = {}
    for tab in await conn.execute(
        sa.select(tb.id, tb.visitor_id, tb.visible).where(tb.visitor_id.in_(list(found)))
    ):
        tabs.setdefault(tab.visitor_id, {})[tab.id] = bool(tab.visible)
    shown: dict[str, tuple[DisplayKind, str]] = {}
    for disp in await conn.execute(
        sa.select(d.visitor_id, d.kind, d.e164).where(
            d.visitor_id.in_(list(found)), d.ended_at.is_(None)
        )
    ):
        shown[disp.visitor_id] = (DisplayKind(disp.kind), disp.e164)
    held = {
        n.last_visitor_id: n.e164
        for n in sorted(engine.pool.numbers.values(), key=_released)
        if n.last_visitor_id in found and n.lease is None
    }
    restored = []
    for visitor_id, row in found.items():
        visit = visits.get(visitor_id)
        lease = engine.pool.leases.get(visitor_id)
        restored.append(
            Visitor(
                visitor_id,
                lease.address if lease else "",
                bot=bool(row.bot),
                tabs=tabs.get(visitor_id, {}),
                visit_id=visit.id if visit else None,
                visit_started_at=visit.started_at if visit else None,
                visit_source=TrafficSource(visit.source, visit.medium, visit.campaign)
                if visit
                else None,
                visit_tracked=bool(visit.tracked) if visit else False,
                last_seen_at=visit.last_seen_at if visit else row.last_seen_at,
                last_activity_at=row.last_activity_at,
                revoked_at=row.revoked_at,
                waiting_since=row.waiting_since,
                wants=bool(row.wants_number),
                held=held.get(visitor_id),
                shown=_current_display(shown.get(visitor_id), lease),
            )
        )
    return restored


def _current_display(
    display: tuple[DisplayKind, str] | None, lease: Lease | None
) -> tuple[DisplayKind, str] | None:
    if lease is not None:
        return (DisplayKind.DYNAMIC, lease.e164)
    return display


def _released(number: Number) -> float:
    return number.released_at.timestamp() if number.released_at else 0.0


async def offer_reserve(
    conn: AsyncConnection,
    engine: SiteEngine,
    site: Site,
    now: datetime,
    want: int = 0,
    *,
    part: int | None = None,
) -> None:
    """The reserve numbers growth would pick from (never one cooling for another site): a few,
    or `want` for a batch that may grow by that many; and how many more numbers the account
    may take. A part of a split site is offered the numbers whose digits fall in it first, so
    that parts growing at once do not reach for the same numbers, then the others (a part
    whose share of the reserve ran out still grows to its share of the pool)."""
    parts = site.decision_parts if part is not None else 1
    wanted = max(RESERVE_CANDIDATES, want)
    candidates: list[str] = []
    others: list[str] = []  # the other parts' numbers, offered last (a taken one: StaleState)
    after = ""
    for _ in range(RESERVE_PAGES):
        # A part reads on past the other parts' numbers, in pages.
        page, last = await _reserve_page(conn, site, now, after, wanted * parts)
        for e164 in page:
            (candidates if part_of(e164, parts) == (part or 0) else others).append(e164)
        if parts == 1 or len(candidates) >= wanted or last is None:
            break
        after = last
    candidates += others
    if part is None:
        room = await account_room(conn, site.account_id)
    elif engine.capacity > 0:
        # A part keeps the room its last growth counted (site_batches re-counts it under the
        # account's lock after every growth, and a batch that overshot runs again on a fresh
        # count): holding the account's row from here to its commit, parts growing at once
        # would take turns for it.
        room = engine.capacity
    else:
        room = await account_room(conn, site.account_id, lock=False)
    engine.offer_reserve(candidates[:wanted], room)


async def _reserve_page(
    conn: AsyncConnection, site: Site, now: datetime, after: str, limit: int
) -> tuple[list[str], str | None]:
    """Reserve numbers the site may take, in order, after `after`, from `limit` rows read; and
    the last number read, where the next page starts (None: the reserve ended here)."""
    n = t.numbers.c
    rows = list(
        await conn.execute(
            sa.select(n.e164, n.cooling_site_id, n.cooling_until)
            .where(
                n.site_id.is_(None),
                n.e164 > after,
                sa.or_(
                    n.cooling_until.is_(None),
                    n.cooling_site_id.is_(None),
                    n.cooling_site_id == site.id,
                    n.cooling_until <= now,
                ),
            )
            .order_by(n.e164)
            .limit(limit)
        )
    )
    usable = [
        r.e164
        for r in rows
        if not is_cooling_for(
            NumberSnapshot(
                r.e164, None, cooling_site_id=r.cooling_site_id, cooling_until=r.cooling_until
            ),
            site.id,
            now,
        )
    ]
    return usable, rows[-1].e164 if len(rows) == limit else None

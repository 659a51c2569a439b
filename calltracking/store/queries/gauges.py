"""Database-wide figures for /metrics: pools, recent exhaustions, outbox backlog, export queues.

Rules:
- Reads only, in one read transaction; the same figures whichever node is scraped, so dashboards
  take `max` over instances rather than `sum`.
- Cardinality is bounded: pool states are summed over all sites; only the `top` sites with the
  most recent exhaustions are named (by their public key, never an id or a number); export
  targets are the fixed `ga4`, `metrika` and `webhook`.
- Ages are measured against the `now` passed in, never a clock read here.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core.kinds import PoolState
from calltracking.store import schema as t
from calltracking.store.sites import site_from_row

EXHAUSTION_WINDOW = timedelta(minutes=5)
EXPORT_TARGETS = ("ga4", "metrika", "webhook")
SITES_PER_STATEMENT = 1_000  # a statement's bound parameters stay well under asyncpg's 32,767


@dataclass(frozen=True, slots=True)
class ExportQueue:
    pending: int = 0
    failed: int = 0
    oldest_pending_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Gauges:
    pool: Counter[str] = field(default_factory=Counter)  # state -> numbers, all sites
    reserve: int = 0  # numbers of no site, ready to join a pool
    sites_exhausted: int = 0  # sites that refused a visitor in the last EXHAUSTION_WINDOW
    exhaustions_recent: int = 0  # in the last EXHAUSTION_WINDOW, all sites
    top_exhausted: dict[str, int] = field(default_factory=dict)  # site key -> recent exhaustions
    outbox_pending: int = 0
    outbox_oldest_s: float = 0.0
    exports: dict[str, ExportQueue] = field(default_factory=dict)


async def read_gauges(conn: AsyncConnection, now: datetime, top: int = 5) -> Gauges:
    per_site = await _exhaustions(conn, now)
    reserve = await conn.execute(
        sa.select(sa.func.count()).where(
            t.numbers.c.role == "reserve", t.numbers.c.site_id.is_(None)
        )
    )
    pending, oldest = await _oldest(conn, t.outbox, t.outbox.c.published_at.is_(None), now)
    return Gauges(
        pool=await _pools(conn, now),
        reserve=int(reserve.scalar_one()),
        sites_exhausted=len(per_site),
        exhaustions_recent=sum(n for _, n in per_site),
        top_exhausted=dict(per_site[:top]),
        outbox_pending=pending,
        outbox_oldest_s=oldest,
        exports=await _exports(conn, now),
    )


async def _pools(conn: AsyncConnection, now: datetime) -> Counter[str]:
    """Every live site's pool numbers by state, counted by the database: one aggregate per
    distinct `hold_s` among the sites, instead of a row per number read into Python (~14 µs a
    number: a 20,000-number pool held a node's loop for ~0.3 s at every scrape). The states
    are those of `rules.pool_state` (tests hold the two to each other)."""
    sites = [
        site_from_row(row)
        for row in await conn.execute(sa.select(t.sites).where(t.sites.c.deleted_at.is_(None)))
    ]
    by_hold: dict[int, list[str]] = defaultdict(list)
    for site in sites:
        by_hold[site.settings.hold_s].append(site.id)
    total: Counter[str] = Counter(
        {str(s): 0 for s in (PoolState.FREE, PoolState.LEASED, PoolState.HELD)}
    )
    for hold_s, site_ids in by_hold.items():
        held_since = now - timedelta(seconds=hold_s)
        for at in range(0, len(site_ids), SITES_PER_STATEMENT):
            numbers, leased, held = await _pool_counts(
                conn, site_ids[at : at + SITES_PER_STATEMENT], held_since
            )
            total[str(PoolState.LEASED)] += leased
            total[str(PoolState.HELD)] += held
            total[str(PoolState.FREE)] += numbers - leased - held
    return total


async def _pool_counts(
    conn: AsyncConnection, site_ids: list[str], held_since: datetime
) -> tuple[int, int, int]:
    """(pool numbers, leased, held) of these sites, held meaning released since `held_since`."""
    numbers, leases = t.numbers, t.leases
    # `IN` an uncorrelated subquery, not a join: PostgreSQL hashes the active leases once
    # whatever its statistics say (a join planned on a fresh table's probed every lease for
    # every number: 0.3 s for 2,000 numbers).
    lease = numbers.c.e164.in_(sa.select(leases.c.number).where(leases.c.ended_at.is_(None)))
    held = sa.and_(
        numbers.c.last_released_at.is_not(None),
        numbers.c.last_visitor_id.is_not(None),
        numbers.c.last_released_at >= held_since,
        sa.not_(lease),
    )
    row = (
        await conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(sa.case((lease, 1), else_=0)), 0),
                sa.func.coalesce(sa.func.sum(sa.case((held, 1), else_=0)), 0),
            ).where(numbers.c.role == "pool", numbers.c.site_id.in_(site_ids))
        )
    ).one()
    return int(row[0]), int(row[1]), int(row[2])


async def _exhaustions(conn: AsyncConnection, now: datetime) -> list[tuple[str, int]]:
    """(site key, exhaustions in the window), most first."""
    count = sa.func.count().label("n")
    rows = await conn.execute(
        sa.select(t.sites.c.key, count)
        .select_from(t.pool_events.join(t.sites, t.sites.c.id == t.pool_events.c.site_id))
        .where(t.pool_events.c.kind == "exhausted", t.pool_events.c.at >= now - EXHAUSTION_WINDOW)
        .group_by(t.sites.c.key)
        .order_by(count.desc())
    )
    return [(str(row.key), int(row.n)) for row in rows]


async def _oldest(
    conn: AsyncConnection, table: sa.Table, pending: sa.ColumnElement[bool], now: datetime
) -> tuple[int, float]:
    stamp = table.c.occurred_at if table is t.outbox else table.c.updated_at
    row = (await conn.execute(sa.select(sa.func.count(), sa.func.min(stamp)).where(pending))).one()
    oldest = (now - row[1]).total_seconds() if row[1] is not None else 0.0
    return int(row[0]), max(0.0, oldest)


async def _exports(conn: AsyncConnection, now: datetime) -> dict[str, ExportQueue]:
    queues: dict[str, ExportQueue] = {}
    for target in EXPORT_TARGETS:
        where: sa.ColumnElement[bool]
        if target == "webhook":
            table, where = t.webhook_deliveries, sa.true()
        else:
            table, where = t.exports, t.exports.c.target == target
        waiting = sa.and_(where, table.c.state == "pending")
        pending, oldest = await _oldest(conn, table, waiting, now)
        given_up = sa.and_(where, table.c.state == "failed")
        failed = (
            await conn.execute(sa.select(sa.func.count()).select_from(table).where(given_up))
        ).scalar_one()
        queues[target] = ExportQueue(pending, int(failed), oldest)
    return queues

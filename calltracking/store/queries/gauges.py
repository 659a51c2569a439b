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

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core import leases as rules
from calltracking.core.kinds import PoolState
from calltracking.store import schema as t
from calltracking.store.queries.pool_states import active_leases, number_snapshot
from calltracking.store.sites import site_from_row

EXHAUSTION_WINDOW = timedelta(minutes=5)
EXPORT_TARGETS = ("ga4", "metrika", "webhook")


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
    sites = {
        row.id: site_from_row(row)
        for row in await conn.execute(sa.select(t.sites).where(t.sites.c.deleted_at.is_(None)))
    }
    leases = await active_leases(conn, None)
    rows = await conn.execute(sa.select(t.numbers).where(t.numbers.c.role == "pool"))
    total: Counter[str] = Counter(
        {str(s): 0 for s in (PoolState.FREE, PoolState.LEASED, PoolState.HELD)}
    )
    for row in rows:
        site = sites.get(row.site_id)
        if site is not None:
            state = rules.pool_state(number_snapshot(row, leases.get(row.e164)), site.settings, now)
            total[str(state)] += 1
    return total


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

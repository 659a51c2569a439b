"""The inputs of a site report over a window: calls, visits, number displays, pool facts.

Rules:
- Calls and visits are those started within [since, until); displays and leases those
  overlapping it.
- Reads only; the report itself is computed by `core.reports`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core.reports.inputs import DisplayPeriod, PoolFacts, VisitRecord
from calltracking.store import schema as t
from calltracking.store.calls import record_from_row, session_from_row
from calltracking.store.queries.pool_states import pool_size
from calltracking.store.sites import Site


@dataclass(frozen=True, slots=True)
class ReportInputs:
    calls: list[Any]
    visits: list[VisitRecord]
    displays: list[DisplayPeriod]
    pool: PoolFacts


async def report_inputs(
    conn: AsyncConnection, site: Site, since: datetime, until: datetime
) -> ReportInputs:
    c = t.calls.c
    call_rows = list(
        await conn.execute(
            sa.select(t.calls).where(
                c.site_id == site.id, c.started_at >= since, c.started_at < until
            )
        )
    )
    visit_ids = [r.visit_id for r in call_rows if r.visit_id]
    sessions = {}
    if visit_ids:
        for row in await conn.execute(sa.select(t.visits).where(t.visits.c.id.in_(visit_ids))):
            sessions[row.id] = session_from_row(row)
    calls = [record_from_row(r, sessions.get(r.visit_id)) for r in call_rows]
    v = t.visits.c
    visits = [
        VisitRecord(
            r.id, r.visitor_id, r.started_at, r.source, r.medium, r.campaign, r.got_number, r.bot
        )
        for r in await conn.execute(
            sa.select(t.visits, t.visitors.c.bot)
            .join(t.visitors, t.visitors.c.id == v.visitor_id)
            .where(v.site_id == site.id, v.started_at >= since, v.started_at < until)
        )
    ]
    d = t.displays.c
    displays = [
        DisplayPeriod(r.visitor_id, r.kind, r.e164, r.started_at, r.ended_at, r.anchor_at)
        for r in await conn.execute(
            sa.select(t.displays).where(
                d.site_id == site.id,
                d.started_at < until,
                sa.or_(d.ended_at.is_(None), d.ended_at >= since),
            )
        )
    ]
    return ReportInputs(calls, visits, displays, await _pool_facts(conn, site, since, until))


async def _pool_facts(
    conn: AsyncConnection, site: Site, since: datetime, until: datetime
) -> PoolFacts:
    """Size now, the most leases active at once within the window, exhaustions in it."""
    lc = t.leases.c
    changes: list[tuple[datetime, int]] = []
    for r in await conn.execute(
        sa.select(lc.assigned_at, lc.ended_at).where(
            lc.site_id == site.id,
            lc.assigned_at < until,
            sa.or_(lc.ended_at.is_(None), lc.ended_at > since),
        )
    ):
        changes.append((max(r.assigned_at, since), +1))
        if r.ended_at is not None and r.ended_at < until:
            changes.append((r.ended_at, -1))
    peak = leased = 0
    for _, step in sorted(changes):  # at one instant the ends (-1) come before the starts
        leased += step
        peak = max(peak, leased)
    pc = t.pool_events.c
    exhausted = await conn.scalar(
        sa.select(sa.func.count())
        .select_from(t.pool_events)
        .where(pc.site_id == site.id, pc.kind == "exhausted", pc.at >= since, pc.at < until)
    )
    return PoolFacts(await pool_size(conn, site.id), peak, int(exhausted or 0))

"""What a replay of a site's own traffic needs, read from the store (reads only; the rows are
built by `calltracking.simulate.site_traffic`, the advice by `calltracking.simulate.advise`).

Rules:
- Visits started in [since, until), at most `max_visits` of them, the latest kept (a busy site's
  window shrinks to what a replay can do in reasonable time; `since` then moves to the first kept
  visit and the answer says so).
- The visitors' last activity, the site's displays of default numbers and its leases (the
  displays of dynamic numbers) overlapping the window, and the site's calls started in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.simulate.site_traffic import CallFact, DisplayFact, SiteFacts, VisitFact
from calltracking.store import schema as t

MAX_VISITS = 60_000


@dataclass(frozen=True, slots=True)
class LoadedFacts:
    facts: SiteFacts
    since: datetime  # the window's start actually used
    truncated: bool


async def load_site_facts(
    conn: AsyncConnection,
    site_id: str,
    since: datetime,
    until: datetime,
    max_visits: int = MAX_VISITS,
) -> LoadedFacts:
    visits = await _visits(conn, site_id, since, until, max_visits)
    truncated = len(visits) > max_visits
    if truncated:
        visits = visits[-max_visits:]
        since = visits[0].started_at
    activity = await _activity(conn, sorted({f.visitor_id for f in visits}))
    displays = await _displays(conn, site_id, since, until)
    displays += await _leases_as_displays(conn, site_id, since, until)
    c = t.calls.c
    calls = [
        CallFact(r.started_at, r.did, r.kind, r.visitor_id, r.visit_id)
        for r in await conn.execute(
            sa.select(c.started_at, c.did, c.kind, c.visitor_id, c.visit_id).where(
                c.site_id == site_id, c.started_at >= since, c.started_at < until
            )
        )
    ]
    return LoadedFacts(SiteFacts(visits, activity, displays, calls), since, truncated)


async def _visits(
    conn: AsyncConnection, site_id: str, since: datetime, until: datetime, max_visits: int
) -> list[VisitFact]:
    """The latest `max_visits + 1` visits in the window, oldest first (one more tells that
    the window was cut)."""
    v = t.visits.c
    rows = await conn.execute(
        sa.select(v.id, v.visitor_id, v.started_at, v.last_seen_at, v.landing_url, v.referrer)
        .where(v.site_id == site_id, v.started_at >= since, v.started_at < until)
        .order_by(v.started_at.desc())
        .limit(max_visits + 1)
    )
    latest = [
        VisitFact(
            r.id, r.visitor_id, r.started_at, r.last_seen_at, r.landing_url or "", r.referrer or ""
        )
        for r in rows
    ]
    return latest[::-1]


async def _activity(conn: AsyncConnection, visitor_ids: list[str]) -> dict[str, datetime]:
    vc = t.visitors.c
    activity: dict[str, datetime] = {}
    for chunk in _chunks(visitor_ids):
        for row in await conn.execute(
            sa.select(vc.id, vc.last_activity_at).where(vc.id.in_(chunk))
        ):
            activity[row.id] = row.last_activity_at
    return activity


async def _displays(
    conn: AsyncConnection, site_id: str, since: datetime, until: datetime
) -> list[DisplayFact]:
    d = t.displays.c
    return [
        DisplayFact(r.visitor_id, r.kind, r.e164, r.started_at, r.ended_at)
        for r in await conn.execute(
            sa.select(d.visitor_id, d.kind, d.e164, d.started_at, d.ended_at).where(
                d.site_id == site_id,
                d.started_at < until,
                sa.or_(d.ended_at.is_(None), d.ended_at >= since),
            )
        )
    ]


async def _leases_as_displays(
    conn: AsyncConnection, site_id: str, since: datetime, until: datetime
) -> list[DisplayFact]:
    """Leases are the displays of dynamic numbers (the displays table keeps default ones)."""
    lc = t.leases.c
    return [
        DisplayFact(r.visitor_id, "dynamic", r.number, r.assigned_at, r.ended_at)
        for r in await conn.execute(
            sa.select(lc.visitor_id, lc.number, lc.assigned_at, lc.ended_at).where(
                lc.site_id == site_id,
                lc.assigned_at < until,
                sa.or_(lc.ended_at.is_(None), lc.ended_at >= since),
            )
        )
    ]


def _chunks(values: list[str], size: int = 500) -> list[list[str]]:
    return [values[i : i + size] for i in range(0, len(values), size)]

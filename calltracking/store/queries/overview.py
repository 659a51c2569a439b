"""The calls an overview counts: one site's, one account's, or (admin) everyone's, started in
[since, until); and which of them are target calls by their account's rule.

Reads only; the figures are computed by `core.reports.overview`.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core.qualification import is_target_call
from calltracking.core.records import CallRecord
from calltracking.store import schema as t
from calltracking.store.calls import record_from_row, session_from_row
from calltracking.store.queries.call_listing import target_rules


async def overview_calls(
    conn: AsyncConnection,
    *,
    account_id: str | None,
    site_id: str | None,
    since: datetime,
    until: datetime,
) -> tuple[list[CallRecord], frozenset[str] | None]:
    """(calls, ids of target calls); the ids are None when no account involved has a rule."""
    c = t.calls.c
    query = sa.select(t.calls).where(c.started_at >= since, c.started_at < until)
    if account_id is not None:
        query = query.where(c.account_id == account_id)
    if site_id is not None:
        query = query.where(c.site_id == site_id)
    rows = list(await conn.execute(query))
    visit_ids = list({r.visit_id for r in rows if r.visit_id})
    sessions = {}
    for chunk in range(0, len(visit_ids), 500):
        ids = visit_ids[chunk : chunk + 500]
        for v in await conn.execute(sa.select(t.visits).where(t.visits.c.id.in_(ids))):
            sessions[v.id] = session_from_row(v)
    records = [record_from_row(r, sessions.get(r.visit_id)) for r in rows]
    accounts = {account_id} if account_id else {r.account_id for r in rows if r.account_id}
    rules = await target_rules(conn, accounts)
    if all(rule is None for rule in rules.values()):
        return records, None
    target = frozenset(
        r.id
        for r in records
        if r.account_id
        and is_target_call(
            r.talk_s,
            answered=r.status == "answered",
            spam=r.spam,
            min_talk_s=rules.get(r.account_id),
        )
    )
    return records, target

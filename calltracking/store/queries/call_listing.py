"""Calls as the operator API lists and shows them.

Rules:
- Callers have checked ownership; `account_id=None` means the admin (all calls).
- Calls are ordered by (started_at, id) descending; a cursor is the last row's pair, so pages
  neither repeat nor skip rows when calls arrive meanwhile.
- `has_recording` only for a non-empty recording (a header-only WAV is none).
- Filters are the database's (call_filters.py); `count_calls` counts every page's matches.
- A listed call carries its note, its tags and `target_call` (None while the account has no
  target-call rule).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core.qualification import is_target_call
from calltracking.store import schema as t
from calltracking.store.calls import record_from_row, record_json, session_from_row
from calltracking.store.queries.call_filters import CallFilter, calls_with_visits, conditions

__all__ = [
    "CallCursor",
    "CallFilter",
    "calls_json",
    "count_calls",
    "get_call_row",
    "list_calls",
    "matching_call",
]

WAV_HEADER_BYTES = 44  # a header-only WAV is no recording


@dataclass(frozen=True, slots=True)
class CallCursor:
    started_at: datetime
    id: str


async def list_calls(
    conn: AsyncConnection, flt: CallFilter, limit: int, after: CallCursor | None
) -> tuple[list[dict[str, Any]], CallCursor | None]:
    c = t.calls.c
    where = conditions(flt, conn.dialect.name)
    query = sa.select(t.calls).select_from(calls_with_visits()).where(*where)
    if after is not None:
        query = query.where(
            sa.or_(
                c.started_at < after.started_at,
                sa.and_(c.started_at == after.started_at, c.id < after.id),
            )
        )
    query = query.order_by(c.started_at.desc(), c.id.desc()).limit(limit + 1)
    rows = list(await conn.execute(query))
    page = rows[:limit]
    cursor = CallCursor(page[-1].started_at, page[-1].id) if len(rows) > limit else None
    return await calls_json(conn, page), cursor


async def count_calls(conn: AsyncConnection, flt: CallFilter) -> int:
    """Every call the filter matches, on all pages."""
    query = sa.select(sa.func.count()).select_from(calls_with_visits())
    return int(await conn.scalar(query.where(*conditions(flt, conn.dialect.name))) or 0)


async def get_call_row(conn: AsyncConnection, call_id: str, account_id: str | None) -> Any:
    query = sa.select(t.calls).where(t.calls.c.id == call_id)
    if account_id is not None:
        query = query.where(t.calls.c.account_id == account_id)
    return (await conn.execute(query)).first()


async def calls_json(conn: AsyncConnection, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Calls as `record_json` gives them, with the note, tags and `target_call`;
    `has_recording` only for a non-empty recording."""
    visit_ids = [r.visit_id for r in rows if r.visit_id]
    sessions = {}
    if visit_ids:
        for v in await conn.execute(sa.select(t.visits).where(t.visits.c.id.in_(visit_ids))):
            sessions[v.id] = session_from_row(v)
    states: dict[str, dict[str, str]] = {r.id: {} for r in rows}
    tags: dict[str, list[str]] = {r.id: [] for r in rows}
    rules: dict[str, int | None] = {}
    if rows:
        for e in await conn.execute(
            sa.select(t.exports).where(t.exports.c.call_id.in_(list(states)))
        ):
            states[e.call_id][e.target] = e.state
        tagged = sa.select(t.call_tags).where(t.call_tags.c.call_id.in_(list(states)))
        for tag in await conn.execute(tagged.order_by(t.call_tags.c.tag)):
            tags[tag.call_id].append(tag.tag)
        rules = await target_rules(conn, {r.account_id for r in rows if r.account_id})
    out = []
    for r in rows:
        record = record_from_row(r, sessions.get(r.visit_id))
        body = record_json(record, states[r.id], has_recording=has_recording(r))
        target = is_target_call(
            record.talk_s,
            answered=r.status == "answered",
            spam=bool(r.spam),
            min_talk_s=rules.get(r.account_id) if r.account_id else None,
        )
        out.append(body | {"note": r.note, "tags": tags[r.id], "target_call": target})
    return out


async def target_rules(conn: AsyncConnection, account_ids: set[str]) -> dict[str, int | None]:
    if not account_ids:
        return {}
    query = sa.select(t.accounts.c.id, t.accounts.c.target_call_talk_s).where(
        t.accounts.c.id.in_(account_ids)
    )
    return {row.id: row.target_call_talk_s for row in await conn.execute(query)}


def has_recording(row: Any) -> bool:
    size = row.recording_size
    if row.recording_path is None or size is None:
        return False
    return bool(size > WAV_HEADER_BYTES if row.recording_path.endswith(".wav") else size > 0)


async def matching_call(
    conn: AsyncConnection, flt: CallFilter, call_id: str
) -> dict[str, Any] | None:
    """One call as the list shows it, if the filter matches it (the live feed asks per event)."""
    query = (
        sa.select(t.calls)
        .select_from(calls_with_visits())
        .where(t.calls.c.id == call_id, *conditions(flt, conn.dialect.name))
    )
    row = (await conn.execute(query)).first()
    return None if row is None else (await calls_json(conn, [row]))[0]

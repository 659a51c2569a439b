"""Calls as the operator API lists and shows them.

Rules:
- Callers have checked ownership; `account_id=None` means the admin (all calls).
- Calls are ordered by (started_at, id) descending; a cursor is the last row's pair, so pages
  neither repeat nor skip rows when calls arrive meanwhile.
- `has_recording` only for a non-empty recording (a header-only WAV is none).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.store import schema as t
from calltracking.store.calls import record_from_row, record_json, session_from_row

WAV_HEADER_BYTES = 44  # a header-only WAV is no recording


@dataclass(frozen=True, slots=True)
class CallFilter:
    account_id: str | None  # None: the admin, every call
    site_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    kind: str | None = None
    status: str | None = None


@dataclass(frozen=True, slots=True)
class CallCursor:
    started_at: datetime
    id: str


async def list_calls(
    conn: AsyncConnection, flt: CallFilter, limit: int, after: CallCursor | None
) -> tuple[list[dict[str, Any]], CallCursor | None]:
    c = t.calls.c
    query = sa.select(t.calls)
    if flt.account_id is not None:
        query = query.where(c.account_id == flt.account_id)
    if flt.site_id is not None:
        query = query.where(c.site_id == flt.site_id)
    if flt.since is not None:
        query = query.where(c.started_at >= flt.since)
    if flt.until is not None:
        query = query.where(c.started_at < flt.until)
    if flt.kind is not None:
        query = query.where(c.kind == flt.kind)
    if flt.status is not None:
        query = query.where(c.status == flt.status)
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


async def get_call_row(conn: AsyncConnection, call_id: str, account_id: str | None) -> Any:
    query = sa.select(t.calls).where(t.calls.c.id == call_id)
    if account_id is not None:
        query = query.where(t.calls.c.account_id == account_id)
    return (await conn.execute(query)).first()


async def calls_json(conn: AsyncConnection, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Calls as `record_json` gives them; `has_recording` only for a non-empty recording."""
    visit_ids = [r.visit_id for r in rows if r.visit_id]
    sessions = {}
    if visit_ids:
        for v in await conn.execute(sa.select(t.visits).where(t.visits.c.id.in_(visit_ids))):
            sessions[v.id] = session_from_row(v)
    states: dict[str, dict[str, str]] = {r.id: {} for r in rows}
    if rows:
        for e in await conn.execute(
            sa.select(t.exports).where(t.exports.c.call_id.in_(list(states)))
        ):
            states[e.call_id][e.target] = e.state
    return [
        record_json(
            record_from_row(r, sessions.get(r.visit_id)),
            states[r.id],
            has_recording=has_recording(r),
        )
        | {"note": r.note}
        for r in rows
    ]


def has_recording(row: Any) -> bool:
    size = row.recording_size
    if row.recording_path is None or size is None:
        return False
    return bool(size > WAV_HEADER_BYTES if row.recording_path.endswith(".wav") else size > 0)

"""The operator's changes to one call: spam and note, export retries.

Rules:
- Callers have checked ownership; every change runs inside the caller's one write transaction.
- Spam leaves the leads and the exports (pending ones become skipped with detail `spam`);
  unmarking restores both.
- A spam call is never exported again: its retry is a Conflict naming why.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core.errors import Conflict, NotFound
from calltracking.core.kinds import ExportState
from calltracking.store import schema as t
from calltracking.store.exports import rows as export_rows
from calltracking.store.queries.leads import is_lead_again

SPAM_DETAIL = "spam"  # exports skipped because the call was marked spam (restored on unmark)


async def patch_call(
    conn: AsyncConnection, row: Any, *, spam: bool | None, note: str | None, set_note: bool
) -> None:
    """Spam leaves the leads and the exports (pending ones become skipped); unmarking restores
    both (the lead only if the caller has no other lead that month)."""
    values: dict[str, Any] = {}
    if set_note:
        values["note"] = note
    if spam is not None and spam != row.spam:
        values["spam"] = spam
        exports = t.exports.update().where(t.exports.c.call_id == row.id)
        if spam:
            values["lead"] = False
            await conn.execute(
                exports.where(t.exports.c.state == str(ExportState.PENDING)).values(
                    state=str(ExportState.SKIPPED), detail=SPAM_DETAIL, next_attempt_at=None
                )
            )
        else:
            values["lead"] = await is_lead_again(conn, row)
            await conn.execute(
                exports.where(
                    t.exports.c.state == str(ExportState.SKIPPED),
                    t.exports.c.detail == SPAM_DETAIL,
                ).values(
                    state=str(ExportState.PENDING), detail=None, next_attempt_at=row.started_at
                )
            )
    if values:
        await conn.execute(t.calls.update().where(t.calls.c.id == row.id).values(**values))


async def retry_export(conn: AsyncConnection, row: Any, target: str, now: datetime) -> str:
    """The API's retry: a spam call is never exported; otherwise the store's `retry_export`
    (failed -> pending); Conflict naming why when that cannot be."""
    if row.spam:
        raise Conflict(f"{target}: cannot retry: the call is spam")
    try:
        fresh = await export_rows.retry_export(conn, row.id, target, now)
    except NotFound:
        raise Conflict(
            f"{target}: this call has no {target} export (it has not ended yet)"
        ) from None
    return str(fresh.state)

"""Analytics export rows (GA4, Metrika): which are due, who holds them, what came of them.

Rules this module keeps (CONTRACT.md "Analytics export"):
- An `exports` row goes pending -> sent | skipped | failed (| not_configured when the target was
  removed from the site); only `retry_export` puts a failed row back to pending.
- A worker claims due rows in one write transaction: the UPDATE bumps `attempts` and pushes
  `next_attempt_at` `CLAIM_S` ahead, guarded by the `attempts` it read (a version), and on
  PostgreSQL the read skips rows another worker has locked. So two workers, on SQLite or
  PostgreSQL, never hold one row; a worker that dies mid-send leaves the row to be picked again
  once the claim lapses: the only window in which a target may see a repeat.
- An outcome is stored only by the claim's holder (same `attempts`), except `Sent`, which wins
  over any pending row: once a send is recorded, nothing sends the call again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core.errors import Conflict, NotFound
from calltracking.core.kinds import ExportState
from calltracking.exporters.outcome import (
    Hopeless,
    Outcome,
    RetryLater,
    Sent,
    Skipped,
    backoff_delay,
    export_state,
)
from calltracking.store import schema as t

TARGETS = ("ga4", "metrika")


#: How long a claim keeps a row from other workers (a send times out well before).
CLAIM_S = 300.0


@dataclass(frozen=True, slots=True)
class Claim:
    """A due export this worker now holds; `attempts` counts this attempt."""

    call_id: str
    target: str
    attempts: int
    site_id: str | None


@dataclass(frozen=True, slots=True)
class ExportRow:
    call_id: str
    target: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    detail: str | None
    updated_at: datetime


async def claim_due(
    conn: AsyncConnection, target: str, now: datetime, *, limit: int = 50
) -> list[Claim]:
    """Claim up to `limit` pending `target` exports due at `now`, oldest first."""
    rows = await conn.execute(
        sa.select(t.exports.c.call_id, t.exports.c.attempts, t.calls.c.site_id)
        .join(t.calls, t.calls.c.id == t.exports.c.call_id)
        .where(
            t.exports.c.target == target,
            t.exports.c.state == str(ExportState.PENDING),
            t.exports.c.next_attempt_at <= now,
        )
        .order_by(t.exports.c.next_attempt_at)
        .limit(limit)
        .with_for_update(of=t.exports, skip_locked=True)
    )
    claims = []
    for row in rows.all():
        result = await conn.execute(
            t.exports.update()
            .where(
                t.exports.c.call_id == row.call_id,
                t.exports.c.target == target,
                t.exports.c.state == str(ExportState.PENDING),
                t.exports.c.attempts == row.attempts,
            )
            .values(
                attempts=row.attempts + 1,
                next_attempt_at=now + timedelta(seconds=CLAIM_S),
                updated_at=now,
            )
        )
        if result.rowcount == 1:
            claims.append(Claim(row.call_id, target, row.attempts + 1, row.site_id))
    return claims


async def record_outcome(
    conn: AsyncConnection,
    claim: Claim,
    outcome: Outcome,
    now: datetime,
    *,
    jitter: float,
    detail: str | None = None,
    next_attempt_at: datetime | None = None,
) -> ExportState | None:
    """Store what the claimed attempt came to; None when the claim had lapsed meanwhile.

    `detail` and `next_attempt_at` (the upload to poll) apply to a `Sent` outcome.
    """
    state = export_state(outcome, claim.attempts)
    values: dict[str, Any] = {"state": str(state), "updated_at": now, "next_attempt_at": None}
    match outcome:
        case Sent(text):
            values["detail"] = (detail or text)[:200]
            values["last_error"] = None
            values["next_attempt_at"] = next_attempt_at
        case Skipped(reason) | Hopeless(reason):
            values["last_error"] = reason[:500]
        case RetryLater(reason):
            values["last_error"] = reason[:500]
            if state is ExportState.PENDING:
                delay = backoff_delay(claim.attempts, jitter=jitter)
                values["next_attempt_at"] = now + timedelta(seconds=delay)
    where = [
        t.exports.c.call_id == claim.call_id,
        t.exports.c.target == claim.target,
        t.exports.c.state == str(ExportState.PENDING),
    ]
    if not isinstance(outcome, Sent):
        where.append(t.exports.c.attempts == claim.attempts)
    result = await conn.execute(t.exports.update().where(*where).values(**values))
    return state if result.rowcount == 1 else None


async def mark_not_configured(
    conn: AsyncConnection, claim: Claim, now: datetime, reason: str
) -> None:
    """The site no longer has this target: the export is not to be made."""
    await conn.execute(
        t.exports.update()
        .where(
            t.exports.c.call_id == claim.call_id,
            t.exports.c.target == claim.target,
            t.exports.c.state == str(ExportState.PENDING),
        )
        .values(
            state=str(ExportState.NOT_CONFIGURED),
            next_attempt_at=None,
            last_error=reason[:500],
            updated_at=now,
        )
    )


async def exports_for_call(conn: AsyncConnection, call_id: str) -> list[ExportRow]:
    rows = await conn.execute(
        sa.select(t.exports).where(t.exports.c.call_id == call_id).order_by(t.exports.c.target)
    )
    return [_export_row(row) for row in rows]


def _export_row(row: Any) -> ExportRow:
    return ExportRow(
        call_id=row.call_id,
        target=row.target,
        state=row.state,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        detail=row.detail,
        updated_at=row.updated_at,
    )


async def retry_export(
    conn: AsyncConnection, call_id: str, target: str, now: datetime
) -> ExportRow:
    """Put a failed export back to pending, due at once, with a fresh attempt count.

    Raises `NotFound` for an unknown call or target, `Conflict` unless the export failed.
    """
    if target not in TARGETS:
        raise NotFound(f"no export target {target!r}")
    row = (
        await conn.execute(
            sa.select(t.exports).where(t.exports.c.call_id == call_id, t.exports.c.target == target)
        )
    ).first()
    if row is None:
        raise NotFound(f"call {call_id} has no {target} export")
    if row.state != str(ExportState.FAILED):
        raise Conflict(f"the {target} export of call {call_id} is {row.state}, not failed")
    await conn.execute(
        t.exports.update()
        .where(
            t.exports.c.call_id == call_id,
            t.exports.c.target == target,
            t.exports.c.state == str(ExportState.FAILED),
        )
        .values(
            state=str(ExportState.PENDING),
            attempts=0,
            next_attempt_at=now,
            last_error=None,
            detail=None,
            updated_at=now,
        )
    )
    (fresh,) = [r for r in await exports_for_call(conn, call_id) if r.target == target]
    return fresh

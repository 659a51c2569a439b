"""Export bookkeeping: which analytics exports and webhook deliveries are due, who holds them,
and what came of them.

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
- Metrika: the rows of an accepted upload are `sent` with `detail` "upload <id> <STATUS> (<n>
  polls)"; a sent row with `next_attempt_at` set still has its upload's status to poll.
- Webhook deliveries: one row per (event id, url), so a redelivered event adds nothing; retries
  read the event body back from the outbox.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core.errors import Conflict, NotFound
from calltracking.core.events import Event
from calltracking.core.kinds import ExportState
from calltracking.exporters.outcome import (
    MAX_ATTEMPTS,
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
_UPLOAD_RE = re.compile(r"upload (\d+) (\S+) \((\d+) polls\)")


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


@dataclass(frozen=True, slots=True)
class Upload:
    """A Metrika upload whose processing status is still to be asked."""

    site_id: str
    upload_id: str
    status: str
    polls: int


# --- analytics exports ------------------------------------------------------------------------


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


# --- Metrika uploads --------------------------------------------------------------------------


def upload_detail(upload_id: str, status: str, polls: int) -> str:
    return f"upload {upload_id} {status or '?'} ({polls} polls)"


def parse_upload_detail(detail: str | None) -> tuple[str, str, int] | None:
    match = _UPLOAD_RE.fullmatch(detail or "")
    if match is None:
        return None
    return match.group(1), match.group(2), int(match.group(3))


async def uploads_to_poll(conn: AsyncConnection, now: datetime) -> list[Upload]:
    rows = await conn.execute(
        sa.select(t.calls.c.site_id, t.exports.c.detail)
        .join(t.calls, t.calls.c.id == t.exports.c.call_id)
        .where(
            t.exports.c.target == "metrika",
            t.exports.c.state == str(ExportState.SENT),
            t.exports.c.next_attempt_at <= now,
        )
        .distinct()
    )
    uploads = []
    for row in rows:
        parsed = parse_upload_detail(row.detail)
        if parsed is not None and row.site_id is not None:
            uploads.append(Upload(row.site_id, *parsed))
    return uploads


async def record_upload_status(
    conn: AsyncConnection,
    upload: Upload,
    status: str,
    now: datetime,
    *,
    next_poll_at: datetime | None,
    failure: str | None = None,
) -> None:
    """Store a poll of `upload`; `failure` turns its rows failed (Metrika refused the file)."""
    values: dict[str, Any] = {
        "detail": upload_detail(upload.upload_id, status, upload.polls + 1)[:200],
        "next_attempt_at": None if failure else next_poll_at,
        "updated_at": now,
    }
    if failure:
        values["state"] = str(ExportState.FAILED)
        values["last_error"] = failure[:500]
    await conn.execute(
        t.exports.update()
        .where(
            t.exports.c.target == "metrika",
            t.exports.c.state == str(ExportState.SENT),
            t.exports.c.detail == upload_detail(upload.upload_id, upload.status, upload.polls),
        )
        .values(**values)
    )


#: `processed_events` consumer under which the counters with the extended window are kept.
THRESHOLD_CONSUMER = "metrika.extended_threshold"


async def thresholds_enabled(conn: AsyncConnection) -> set[str]:
    """Metrika counters whose extended join window this tracker has switched on."""
    ids = await conn.scalars(
        sa.select(t.processed_events.c.event_id).where(
            t.processed_events.c.consumer == THRESHOLD_CONSUMER
        )
    )
    return set(ids)


async def remember_threshold(conn: AsyncConnection, counter_id: str, now: datetime) -> None:
    await _insert_ignoring_duplicates(
        conn,
        t.processed_events,
        {"consumer": THRESHOLD_CONSUMER, "event_id": counter_id[:40], "at": now},
        ["consumer", "event_id"],
    )


async def _insert_ignoring_duplicates(
    conn: AsyncConnection, table: sa.Table, values: dict[str, Any], keys: list[str]
) -> int:
    """INSERT .. ON CONFLICT DO NOTHING on either engine; 1 when the row was new."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(**values).on_conflict_do_nothing(index_elements=keys)
    return (await conn.execute(statement)).rowcount


# --- webhook deliveries -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    site_id: str
    call_id: str | None
    event_id: str
    event_key: str
    url: str
    state: str  # pending | delivered | failed
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    updated_at: datetime


async def add_deliveries(
    conn: AsyncConnection,
    event: Event,
    site_id: str,
    call_id: str | None,
    urls: Sequence[str],
    now: datetime,
) -> int:
    """One pending delivery per url not yet recorded for this event; how many were new."""
    added = 0
    for url in urls:
        values = {
            "site_id": site_id,
            "call_id": call_id,
            "event_id": event.id,
            "event_key": event.key[:32],
            "url": url,
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "updated_at": now,
        }
        added += await _insert_ignoring_duplicates(
            conn, t.webhook_deliveries, values, ["event_id", "url"]
        )
    return added


async def claim_due_deliveries(
    conn: AsyncConnection, now: datetime, *, limit: int = 50, event_id: str | None = None
) -> list[Delivery]:
    """Claim pending deliveries due at `now` (only `event_id`'s when given), as `claim_due`."""
    query = (
        sa.select(t.webhook_deliveries)
        .where(
            t.webhook_deliveries.c.state == "pending",
            t.webhook_deliveries.c.next_attempt_at <= now,
        )
        .order_by(t.webhook_deliveries.c.next_attempt_at, t.webhook_deliveries.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if event_id is not None:
        query = query.where(t.webhook_deliveries.c.event_id == event_id)
    claims = []
    for row in (await conn.execute(query)).all():
        held_until = now + timedelta(seconds=CLAIM_S)
        result = await conn.execute(
            t.webhook_deliveries.update()
            .where(
                t.webhook_deliveries.c.id == row.id,
                t.webhook_deliveries.c.state == "pending",
                t.webhook_deliveries.c.attempts == row.attempts,
            )
            .values(attempts=row.attempts + 1, next_attempt_at=held_until, updated_at=now)
        )
        if result.rowcount == 1:
            claim = dataclasses.replace(
                _delivery(row), attempts=row.attempts + 1, next_attempt_at=held_until
            )
            claims.append(claim)
    return claims


async def record_delivery(
    conn: AsyncConnection, claim: Delivery, outcome: Outcome, now: datetime, *, jitter: float
) -> str:
    """Store what the claimed delivery attempt came to; the delivery's new state."""
    values: dict[str, Any] = {"updated_at": now, "next_attempt_at": None}
    match outcome:
        case Sent() | Skipped():
            values["state"] = "delivered"
        case Hopeless(reason):
            values.update(state="failed", last_error=reason[:500])
        case RetryLater(reason):
            values["last_error"] = reason[:500]
            if claim.attempts < MAX_ATTEMPTS:
                delay = backoff_delay(claim.attempts, jitter=jitter)
                values.update(state="pending", next_attempt_at=now + timedelta(seconds=delay))
            else:
                values["state"] = "failed"
    await conn.execute(
        t.webhook_deliveries.update()
        .where(
            t.webhook_deliveries.c.id == claim.id,
            t.webhook_deliveries.c.state == "pending",
            t.webhook_deliveries.c.attempts == claim.attempts,
        )
        .values(**values)
    )
    return str(values["state"])


async def outbox_event(conn: AsyncConnection, event_id: str) -> Event | None:
    """The event as written to the outbox (the body a retried delivery sends again)."""
    payload = await conn.scalar(
        sa.select(t.outbox.c.payload).where(t.outbox.c.event_id == event_id)
    )
    return Event.from_json(payload) if payload is not None else None


async def deliveries_for_call(conn: AsyncConnection, call_id: str) -> list[Delivery]:
    """The webhook delivery log of a call, oldest first."""
    rows = await conn.execute(
        sa.select(t.webhook_deliveries)
        .where(t.webhook_deliveries.c.call_id == call_id)
        .order_by(t.webhook_deliveries.c.id)
    )
    return [_delivery(row) for row in rows]


def _delivery(row: Any) -> Delivery:
    return Delivery(
        id=row.id,
        site_id=row.site_id,
        call_id=row.call_id,
        event_id=row.event_id,
        event_key=row.event_key,
        url=row.url,
        state=row.state,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        updated_at=row.updated_at,
    )

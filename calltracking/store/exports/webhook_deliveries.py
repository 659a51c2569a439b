"""Webhook deliveries: one row per (event id, url), claimed, retried and logged.

Rules:
- A redelivered event adds nothing: the (event id, url) pair is unique.
- Deliveries are claimed as analytics exports are (`rows.claim_due`: `attempts` as a version,
  `CLAIM_S` ahead, locked rows skipped); an outcome is stored only by the claim's holder.
- Retries read the event body back from the outbox.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core.events import Event
from calltracking.exporters.outcome import (
    MAX_ATTEMPTS,
    Hopeless,
    Outcome,
    RetryLater,
    Sent,
    Skipped,
    backoff_delay,
)
from calltracking.store import schema as t
from calltracking.store.exports.idempotent_insert import insert_ignoring_duplicates
from calltracking.store.exports.rows import CLAIM_S


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
        added += await insert_ignoring_duplicates(
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

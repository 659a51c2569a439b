"""Retention: calls and their recordings are kept for the account's `retention_days`, then
deleted with a log line. Visits, leases and display periods of the same age go too, since reports
beyond the retention window would only count visits without their calls, and so do the webhook
deliveries of those calls and of lease events that old. Published outbox events are kept
`OUTBOX_KEEP` (a webhook's retries re-read them within a day; a call event's body holds the
caller's number, which must not outlive its call), unless a pending delivery still needs one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from calltracking.store import schema as t
from calltracking.store.db import Database
from calltracking.store.recordings import delete_recordings

log = logging.getLogger(__name__)
DEFAULT_RETENTION_DAYS = 365
BATCH = 500  # rows deleted per write transaction
OUTBOX_KEEP = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Purged:
    calls: int = 0
    recordings: int = 0
    visits: int = 0
    events: int = 0


async def purge_expired(
    db: Database, recordings_dir: Path, asterisk_monitor_dir: str, now: datetime
) -> Purged:
    """Delete what is past each account's retention, `BATCH` rows per write transaction: a
    first purge after a retention was shortened may meet a year of rows, which in one
    transaction held SQLite's only writer (the visitors' and calls' batches waited) and, past
    ~32,000 ids, exceeded a statement's bound parameters, failing every hour from then on."""
    async with db.read() as conn:
        accounts: list[tuple[str | None, int]] = [
            (row[0], row[1])
            for row in await conn.execute(sa.select(t.accounts.c.id, t.accounts.c.retention_days))
        ]
    # Calls to numbers of no site (kind `unknown`) belong to no account: default retention.
    accounts.append((None, DEFAULT_RETENTION_DAYS))
    calls = recordings = visits = 0
    for account_id, days in accounts:
        cutoff = now - timedelta(days=days)
        calls_gone, recordings_gone = await _purge_calls(
            db, account_id, cutoff, recordings_dir, asterisk_monitor_dir
        )
        calls, recordings = calls + calls_gone, recordings + recordings_gone
        if account_id is not None:
            visits += await _purge_visits(db, account_id, cutoff)
    purged = Purged(calls, recordings, visits, await _purge_outbox(db, now - OUTBOX_KEEP))
    if purged.calls or purged.visits:
        log.info(
            "retention: deleted %d calls, %d recordings, %d visits past their account's retention",
            purged.calls,
            purged.recordings,
            purged.visits,
        )
    if purged.events:
        log.info("retention: deleted %d published events older than %s", purged.events, OUTBOX_KEEP)
    return purged


async def _purge_calls(
    db: Database,
    account_id: str | None,
    cutoff: datetime,
    recordings_dir: Path,
    asterisk_monitor_dir: str,
) -> tuple[int, int]:
    """(calls, recordings) deleted; a batch's recordings go just before its rows."""
    account = t.calls.c.account_id
    owner = account.is_(None) if account_id is None else account == account_id
    calls = recordings = 0
    while True:
        async with db.write() as conn:
            old = (
                await conn.execute(
                    sa.select(t.calls.c.id, t.calls.c.recording_path)
                    .where(owner, t.calls.c.started_at < cutoff)
                    .limit(BATCH)
                )
            ).all()
            recordings += delete_recordings(
                [path for _call_id, path in old if path], asterisk_monitor_dir, recordings_dir
            )
            if old:
                ids = [row[0] for row in old]
                await conn.execute(t.exports.delete().where(t.exports.c.call_id.in_(ids)))
                deliveries = t.webhook_deliveries
                await conn.execute(deliveries.delete().where(deliveries.c.call_id.in_(ids)))
                await conn.execute(t.calls.delete().where(t.calls.c.id.in_(ids)))
                calls += len(ids)
        if len(old) < BATCH:
            return calls, recordings


async def _purge_visits(db: Database, account_id: str, cutoff: datetime) -> int:
    """Visits deleted, with the lease events' deliveries and the display periods as old.
    Visits are walked in id order, since a visit an open lease still points to stays and a
    batch that kept some must not be read again."""
    site_ids = sa.select(t.sites.c.id).where(t.sites.c.account_id == account_id)
    visits, after = 0, ""
    while True:
        async with db.write() as conn:
            ids = list(
                (
                    await conn.execute(
                        sa.select(t.visits.c.id)
                        .where(
                            t.visits.c.site_id.in_(site_ids),
                            t.visits.c.last_seen_at < cutoff,
                            t.visits.c.id > after,
                        )
                        .order_by(t.visits.c.id)
                        .limit(BATCH)
                    )
                ).scalars()
            )
            if ids:
                await conn.execute(
                    t.leases.update()
                    .where(t.leases.c.visit_id.in_(ids), t.leases.c.ended_at.is_not(None))
                    .values(visit_id=None)
                )
                result = await conn.execute(
                    t.visits.delete().where(
                        t.visits.c.id.in_(ids),
                        ~sa.exists().where(t.leases.c.visit_id == t.visits.c.id),
                    )
                )
                visits += result.rowcount or 0
                after = ids[-1]
        if len(ids) < BATCH:
            break
    deliveries = t.webhook_deliveries.c
    old_deliveries = sa.select(deliveries.id).where(
        deliveries.site_id.in_(site_ids),
        deliveries.call_id.is_(None),  # a call's go with it
        deliveries.state != "pending",
        deliveries.updated_at < cutoff,
    )
    await _delete_in_batches(db, t.webhook_deliveries, deliveries.id, old_deliveries)
    old_displays = sa.select(t.displays.c.id).where(
        t.displays.c.site_id.in_(site_ids), t.displays.c.ended_at < cutoff
    )
    await _delete_in_batches(db, t.displays, t.displays.c.id, old_displays)
    return visits


async def _purge_outbox(db: Database, before: datetime) -> int:
    """Published events that occurred before `before` and no pending delivery needs."""
    o, deliveries = t.outbox.c, t.webhook_deliveries.c
    old = sa.select(o.seq).where(
        o.published_at.is_not(None),
        o.occurred_at < before,
        ~sa.exists().where(deliveries.event_id == o.event_id, deliveries.state == "pending"),
    )
    return await _delete_in_batches(db, t.outbox, o.seq, old)


async def _delete_in_batches(
    db: Database, table: sa.Table, key: sa.Column[Any], rows: sa.Select[Any]
) -> int:
    """Delete the rows `rows` selects (their `key`), `BATCH` per write transaction."""
    deleted = 0
    while True:
        async with db.write() as conn:
            result = await conn.execute(table.delete().where(key.in_(rows.limit(BATCH))))
        count = result.rowcount or 0
        deleted += count
        if count < BATCH:
            return deleted

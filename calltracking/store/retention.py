"""Retention: calls and their recordings are kept for the account's `retention_days`, then
deleted with a log line. Visits, leases and display periods of the same age go too, since reports
beyond the retention window would only count visits without their calls.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from calltracking.store import schema as t
from calltracking.store.db import Database
from calltracking.store.recordings import delete_recordings

log = logging.getLogger(__name__)
DEFAULT_RETENTION_DAYS = 365


@dataclass(frozen=True, slots=True)
class Purged:
    calls: int = 0
    recordings: int = 0
    visits: int = 0


async def purge_expired(
    db: Database, recordings_dir: Path, asterisk_monitor_dir: str, now: datetime
) -> Purged:
    calls_gone = recordings_gone = visits_gone = 0
    async with db.write() as conn:
        accounts: list[tuple[str | None, int]] = [
            (row[0], row[1])
            for row in await conn.execute(sa.select(t.accounts.c.id, t.accounts.c.retention_days))
        ]
        # Calls to numbers of no site (kind `unknown`) belong to no account: default retention.
        accounts.append((None, DEFAULT_RETENTION_DAYS))
        for account_id, days in accounts:
            cutoff = now - timedelta(days=days)
            owner = (
                t.calls.c.account_id.is_(None)
                if account_id is None
                else t.calls.c.account_id == account_id
            )
            old = (
                await conn.execute(
                    sa.select(t.calls.c.id, t.calls.c.recording_path).where(
                        owner, t.calls.c.started_at < cutoff
                    )
                )
            ).all()
            recordings_gone += delete_recordings(
                [path for _call_id, path in old if path], asterisk_monitor_dir, recordings_dir
            )
            if old:
                ids = [row[0] for row in old]
                await conn.execute(t.exports.delete().where(t.exports.c.call_id.in_(ids)))
                await conn.execute(t.calls.delete().where(t.calls.c.id.in_(ids)))
                calls_gone += len(ids)
            if account_id is None:
                continue
            site_ids = sa.select(t.sites.c.id).where(t.sites.c.account_id == account_id)
            old_visits = sa.select(t.visits.c.id).where(
                t.visits.c.site_id.in_(site_ids), t.visits.c.last_seen_at < cutoff
            )
            await conn.execute(
                t.leases.update()
                .where(t.leases.c.visit_id.in_(old_visits), t.leases.c.ended_at.is_not(None))
                .values(visit_id=None)
            )
            result = await conn.execute(
                t.visits.delete().where(
                    t.visits.c.id.in_(old_visits),
                    ~sa.exists().where(t.leases.c.visit_id == t.visits.c.id),
                )
            )
            visits_gone += result.rowcount or 0
            await conn.execute(
                t.displays.delete().where(
                    t.displays.c.site_id.in_(site_ids), t.displays.c.ended_at < cutoff
                )
            )
    if calls_gone or visits_gone:
        log.info(
            "retention: deleted %d calls, %d recordings, %d visits past their account's retention",
            calls_gone,
            recordings_gone,
            visits_gone,
        )
    return Purged(calls_gone, recordings_gone, visits_gone)

"""Metrika upload bookkeeping on the `metrika` export rows, and the counters whose
extended join window this tracker has switched on.

Rules:
- The rows of an accepted upload are `sent` with `detail` "upload <id> <STATUS> (<n> polls)"; a
  sent row with `next_attempt_at` set still has its upload's status to poll.
- A poll updates exactly the rows whose `detail` names the upload as last read, so two pollers
  never both count one poll; a refused file turns its rows failed.
- A counter's extended threshold is remembered once (a `processed_events` row).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core.kinds import ExportState
from calltracking.store import schema as t
from calltracking.store.exports.idempotent_insert import insert_ignoring_duplicates

_UPLOAD_RE = re.compile(r"upload (\d+) (\S+) \((\d+) polls\)")


@dataclass(frozen=True, slots=True)
class Upload:
    """A Metrika upload whose processing status is still to be asked."""

    site_id: str
    upload_id: str
    status: str
    polls: int


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
    await insert_ignoring_duplicates(
        conn,
        t.processed_events,
        {"consumer": THRESHOLD_CONSUMER, "event_id": counter_id[:40], "at": now},
        ["consumer", "event_id"],
    )

"""Recording files: where a call's recording is on this host, and erasing a caller.

Rules:
- The stored `recording_path` is Asterisk's (CONTRACT.md, PBX side): absolute under
  `asterisk_monitor_dir`, or relative to it. It maps to the same relative path under
  `recordings_dir`, the folder as this process sees it (perhaps a mount of the PBX's).
- A path with `..`, an absolute path outside the monitor folder, or one whose real path (symlinks
  resolved) leaves `recordings_dir` is refused: stored paths come from the PBX side and are not
  trusted to name files elsewhere on this host.
- Erasing a caller forgets the number on the account's calls and deletes their recordings.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core.errors import NotFound
from calltracking.core.numbers import mask
from calltracking.store import schema as t

log = logging.getLogger(__name__)


class RecordingMissing(NotFound):
    code = "recording_missing"


class RecordingRefused(NotFound):
    code = "recording_refused"


def local_path(stored: str, monitor_dir: str, recordings_dir: Path) -> Path:
    """The real path of a stored recording under `recordings_dir`; RecordingRefused when the
    stored path tries to leave it, RecordingMissing when no such file is there."""
    path = PurePosixPath(stored)
    if ".." in path.parts:
        raise RecordingRefused("the stored recording path contains '..'; it is not served")
    if path.is_absolute():
        try:
            path = path.relative_to(PurePosixPath(monitor_dir))
        except ValueError:
            raise RecordingRefused(
                "the stored recording path is outside Asterisk's monitor folder; it is not served"
            ) from None
    root = recordings_dir.resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root):
        raise RecordingRefused(
            "the recording file resolves outside the recordings folder; it is not served"
        )
    if not target.is_file():
        raise RecordingMissing(
            f"the recording file {path} is not in the recordings folder "
            "(deleted, not yet written, or the folder is not mounted here)"
        )
    return target


async def erase_caller(
    conn: AsyncConnection, account_id: str | None, e164: str
) -> tuple[int, list[str]]:
    """Forget `e164` on the account's calls (all accounts for None); returns the number of calls
    changed and the stored recording paths of those calls, for the caller to delete."""
    c = t.calls.c
    where = [c.caller == e164]
    if account_id is not None:
        where.append(c.account_id == account_id)
    rows: list[Any] = list(await conn.execute(sa.select(c.id, c.recording_path).where(*where)))
    if rows:
        await conn.execute(
            t.calls.update()
            .where(c.id.in_([r.id for r in rows]))
            .values(caller=None, recording_path=None, recording_size=None)
        )
    scrubbed = await _scrub_outbox(conn, {r.id for r in rows})
    log.info("caller %s erased from %d calls and %d stored events", mask(e164), len(rows), scrubbed)
    return len(rows), [r.recording_path for r in rows if r.recording_path]


async def _scrub_outbox(conn: AsyncConnection, call_ids: set[str]) -> int:
    """The outbox keeps each call event's body (webhook retries re-read it): forget the caller
    there too."""
    if not call_ids:
        return 0
    o = t.outbox.c
    rows = await conn.execute(sa.select(o.seq, o.payload).where(o.key.like("call.%")))
    changed = 0
    for seq, payload in rows.all():
        data = payload.get("data") if isinstance(payload, dict) else None
        if (
            not isinstance(data, dict)
            or data.get("id") not in call_ids
            or data.get("caller") is None
        ):
            continue
        scrubbed = {**payload, "data": {**data, "caller": None}}
        await conn.execute(t.outbox.update().where(o.seq == seq).values(payload=scrubbed))
        changed += 1
    return changed


def delete_recordings(paths: list[str], monitor_dir: str, recordings_dir: Path) -> int:
    """Delete the files of stored recording paths; refused or missing ones are skipped."""
    deleted = 0
    for stored in paths:
        try:
            local_path(stored, monitor_dir, recordings_dir).unlink()
        except (NotFound, OSError) as exc:
            log.info("recording not deleted (%s)", exc)
            continue
        deleted += 1
    return deleted

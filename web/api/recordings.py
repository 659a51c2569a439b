"""`GET /api/v1/calls/{id}/recording` (HTTP Range honoured by FileResponse) and
`DELETE /api/v1/callers/{e164}` (forget a caller's number and delete their recordings).

Who may fetch a recording: the call's account (or the admin) with its token, or anyone holding a
valid signed URL (see signing.py); a signed URL is judged alone, whatever the headers.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from calltracking.core.errors import NotFound
from calltracking.store.queries.call_listing import get_call_row
from calltracking.store.recordings import (
    RecordingMissing,
    delete_recordings,
    erase_caller,
    local_path,
)
from web.api import validation as v
from web.api.auth import Access, authorize
from web.api.context import Ctx
from web.api.signing import verify

CONTENT_TYPES = {".wav": "audio/wav", ".mp3": "audio/mpeg", ".ogg": "audio/ogg"}
PLAYABLE = frozenset({".wav"})  # WAV (PCM) plays in the page; others are offered as downloads


async def recording(ctx: Ctx) -> web.StreamResponse:
    call_id, query = ctx.path("call_id"), ctx.request.query
    services = ctx.services
    if "sig" in query or "exp" in query:
        verify(services.signing_key, call_id, query.get("exp"), query.get("sig"), ctx.now())
        scope = None
    else:
        principal = await authorize(ctx.request, services, Access.ANY)
        scope = None if principal.admin else principal.account_id
    async with services.db.read() as conn:
        row = await get_call_row(conn, call_id, scope)
    if row is None:
        raise NotFound(f"call {call_id} does not exist")
    if not row.recording_path:
        raise RecordingMissing(f"call {call_id} has no recording")
    config = services.config
    path = local_path(row.recording_path, config.asterisk_monitor_dir, config.recordings_dir)
    return _file_response(path, call_id)


def _file_response(path: Path, call_id: str) -> web.FileResponse:
    response = web.FileResponse(path)
    suffix = path.suffix.lower()
    response.headers["Content-Type"] = CONTENT_TYPES.get(suffix, "application/octet-stream")
    disposition = "inline" if suffix in PLAYABLE else "attachment"
    response.headers["Content-Disposition"] = f'{disposition}; filename="{call_id}{suffix}"'
    response.headers["Cache-Control"] = "private, max-age=300"
    return response


async def erase_caller_handler(ctx: Ctx) -> web.StreamResponse:
    e164 = v.e164(ctx.path("e164"), "e164")
    async with ctx.services.db.write() as conn:
        calls, paths = await erase_caller(conn, ctx.scope, e164)
    config = ctx.services.config
    deleted = await asyncio.to_thread(
        delete_recordings, paths, config.asterisk_monitor_dir, config.recordings_dir
    )
    return web.json_response({"calls": calls, "recordings_deleted": deleted})

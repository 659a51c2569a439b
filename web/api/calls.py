"""Calls: the list (filters applied by the database, cursor, total), one call, spam/note/tags,
export retries.

A call body is `calltracking.store.calls.record_json` plus `recording_url`: a signed URL while a
non-empty recording exists, else null.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from calltracking.core.errors import InvalidInput, NotFound
from calltracking.core.kinds import AttributionKind, CallStatus
from calltracking.store.calls import EXPORT_TARGETS
from calltracking.store.queries.call_changes import patch_call, retry_export
from calltracking.store.queries.call_listing import (
    CallFilter,
    calls_json,
    count_calls,
    get_call_row,
    list_calls,
)
from calltracking.store.queries.qualification import set_call_tags
from calltracking.store.sites import get_site
from web.api import validation as v
from web.api.context import Ctx
from web.api.qualification import call_tags
from web.api.signing import signed_query

TEXT_FILTERS = ("source", "medium", "campaign", "number", "caller", "tag", "text")
MAX_FILTER_LEN = 200


def recording_url(ctx: Ctx, call_id: str) -> str:
    base = ctx.services.config.public_url.rstrip("/") or str(ctx.request.url.origin())
    query = signed_query(ctx.services.signing_key, call_id, ctx.now())
    return f"{base}/api/v1/calls/{call_id}/recording?{query}"


def with_recording_urls(ctx: Ctx, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for call in calls:
        call["recording_url"] = recording_url(ctx, call["id"]) if call["has_recording"] else None
    return calls


async def owned_call(ctx: Ctx, conn: Any) -> Any:
    call_id = ctx.path("call_id")
    row = await get_call_row(conn, call_id, ctx.scope)
    if row is None:
        raise NotFound(f"call {call_id} does not exist")
    return row


def call_filter(ctx: Ctx) -> CallFilter:
    q = ctx.request
    texts: dict[str, str | None] = {}
    for name in TEXT_FILTERS:
        raw = q.query.get(name, "").strip()
        if len(raw) > MAX_FILTER_LEN:
            raise InvalidInput(name, f"at most {MAX_FILTER_LEN} characters")
        texts[name] = raw or None
    target = v.choice(q, "target", ["true", "false"])
    return CallFilter(
        account_id=ctx.scope,
        site_id=q.query.get("site") or None,
        since=v.timestamp(q, "since"),
        until=v.timestamp(q, "until"),
        kind=v.choice(q, "kind", [str(k) for k in AttributionKind]),
        status=v.choice(q, "status", [str(s) for s in CallStatus]),
        target=None if target is None else target == "true",
        **texts,
    )


async def list_calls_handler(ctx: Ctx) -> web.StreamResponse:
    flt = call_filter(ctx)
    limit, after = v.limit(ctx.request), v.decode_cursor(ctx.request)
    async with ctx.services.db.read() as conn:
        if flt.site_id is not None:
            site = await get_site(conn, flt.site_id)
            if site is None or (ctx.scope is not None and site.account_id != ctx.scope):
                raise NotFound(f"site {flt.site_id} does not exist")
        calls, cursor = await list_calls(conn, flt, limit, after)
        total = await count_calls(conn, flt)
    return web.json_response(
        {
            "calls": with_recording_urls(ctx, calls),
            "next": v.encode_cursor(cursor) if cursor is not None else None,
            "total": total,
        }
    )


async def get_call(ctx: Ctx) -> web.StreamResponse:
    async with ctx.services.db.read() as conn:
        row = await owned_call(ctx, conn)
        calls = await calls_json(conn, [row])
    return web.json_response(with_recording_urls(ctx, calls)[0])


async def patch_call_handler(ctx: Ctx) -> web.StreamResponse:
    body = await v.read_object(ctx.request)
    v.check_fields(body, optional=("spam", "note", "tags"))
    spam = v.boolean(body["spam"], "spam") if "spam" in body else None
    note = body.get("note")
    if note is not None:
        note = v.text(note, "note", max_len=2000)
    async with ctx.services.db.write() as conn:
        row = await owned_call(ctx, conn)
        if "tags" in body:
            await set_call_tags(conn, row.id, await call_tags(conn, row.account_id, body["tags"]))
        await patch_call(conn, row, spam=spam, note=note, set_note="note" in body)
        calls = await calls_json(conn, [await owned_call(ctx, conn)])
    return web.json_response(with_recording_urls(ctx, calls)[0])


async def retry_export_handler(ctx: Ctx) -> web.StreamResponse:
    target = ctx.path("target")
    if target not in EXPORT_TARGETS:
        raise NotFound(f"no export target {target!r}; use one of {', '.join(EXPORT_TARGETS)}")
    async with ctx.services.db.write() as conn:
        row = await owned_call(ctx, conn)
        state = await retry_export(conn, row, target, ctx.now())
    return web.json_response({"call_id": row.id, "target": target, "state": state})

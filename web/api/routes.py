"""The route table: one row per endpoint. `setup_api` registers these rows and `openapi.py`
describes these same rows, so the document cannot drift from what the server does.

Each row says who may call it (auth.Access), which query parameters it accepts (any other is
refused with 422), the JSON schema of its body and of its answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from web.api import (
    accounts,
    advice,
    call_feed,
    calls,
    numbers,
    overview,
    product_schemas,
    qualification,
    recordings,
    reports,
    schemas,
    session,
    sites,
    test_events,
    tokens,
    whoami,
)
from web.api.auth import Access
from web.api.context import Ctx

Handler = Callable[[Ctx], Awaitable[web.StreamResponse]]
Schema = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    schema: Schema
    description: str
    required: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    access: Access
    ok: int = 200
    response: Schema | None = None
    body: Schema | None = None
    query: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()


def _string(description: str, fmt: str | None = None) -> Schema:
    return {"type": "string", "description": description} | ({"format": fmt} if fmt else {})


SINCE = Param("since", _string("inclusive start, ISO 8601 with offset", "date-time"), "")
UNTIL = Param("until", _string("exclusive end, ISO 8601 with offset", "date-time"), "")
CALL_QUERY = (
    Param("site", _string("site id"), "only this site's calls"),
    SINCE,
    UNTIL,
    Param("kind", {"type": "string", "enum": schemas.KINDS}, "attribution kind"),
    Param("status", {"type": "string", "enum": schemas.STATUSES}, "call status"),
    Param("source", _string("visit source (or a static number's label), any case"), ""),
    Param("medium", _string("visit medium, any case"), ""),
    Param("campaign", _string("part of the campaign, any case"), ""),
    Param("number", _string("digits of the number dialled"), ""),
    Param("caller", _string("digits of the caller's number"), ""),
    Param("tag", _string("a tag set on the call"), ""),
    Param("text", _string("text in the caller, number, note, answerer, source or campaign"), ""),
    Param("target", {"type": "string", "enum": ["true", "false"]}, "target calls only, or not"),
    Param("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}, "page size"),
    Param("cursor", _string("the `next` of the previous page"), "continue a listing"),
)
SIGNED_QUERY = (
    Param("exp", {"type": "integer"}, "signed URL expiry (unix seconds)"),
    Param("sig", _string("signed URL signature"), "HMAC of the call id and exp"),
)
V1 = "/api/v1"
ACCOUNT_PARAM = Param("account", _string("account id (required with the admin token)"), "")

# The dashboard's sign-in (web/api/session.py): a session cookie instead of a Bearer header.
SESSION = {
    "type": "object",
    "required": ["admin", "account_id", "csrf", "expires_at"],
    "properties": {
        "admin": {"type": "boolean"},
        "account_id": {"type": ["string", "null"]},
        "csrf": {"type": ["string", "null"], "description": "send as X-CSRF-Token with the cookie"},
        "expires_at": {"type": ["string", "null"], "format": "date-time"},
    },
}
SESSION_IN = {
    "type": "object",
    "required": ["token"],
    "properties": {"token": {"type": "string"}},
    "additionalProperties": False,
}

ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        f"{V1}/session",
        session.sign_in,
        "Sign in with a token: sets the HttpOnly session cookie, answers the CSRF token",
        Access.PUBLIC,
        ok=201,
        body=SESSION_IN,
        response=SESSION,
        errors=(400, 401, 403, 422),
    ),
    Route(
        "GET",
        f"{V1}/session",
        session.current,
        "Who is signed in, and the session's CSRF token",
        Access.ANY,
        response=SESSION,
    ),
    Route(
        "DELETE",
        f"{V1}/session",
        session.sign_out,
        "Sign out: ends the session server-side and clears the cookie",
        Access.ANY,
        ok=204,
        errors=(403,),
    ),
    Route(
        "POST",
        f"{V1}/accounts",
        accounts.create_account,
        "Create an account and its token",
        Access.ADMIN,
        ok=201,
        body=schemas.ACCOUNT_IN,
        response=schemas.ACCOUNT_CREATED,
        errors=(400, 413, 422),
    ),
    Route(
        "GET",
        f"{V1}/accounts",
        accounts.list_accounts,
        "List accounts",
        Access.ADMIN,
        response=schemas.list_of("accounts", schemas.ACCOUNT),
    ),
    Route(
        "GET",
        f"{V1}/accounts/{{account_id}}/leads",
        accounts.account_leads,
        "Leads of a month: what the business bills",
        Access.ANY,
        response=schemas.LEADS,
        query=(Param("month", _string("YYYY-MM in the account's time zone"), "", True),),
        errors=(404, 422),
    ),
    Route(
        "POST",
        f"{V1}/numbers",
        numbers.add_numbers,
        "Add numbers to the reserve",
        Access.ADMIN,
        body=schemas.NUMBERS_IN,
        response=schemas.NUMBERS_ADDED,
        errors=(400, 413, 422),
    ),
    Route(
        "GET",
        f"{V1}/numbers",
        numbers.list_numbers,
        "Reserve, pool and default numbers",
        Access.ADMIN,
        response=schemas.list_of("numbers", schemas.NUMBER),
    ),
    Route(
        "POST",
        f"{V1}/sites",
        sites.create_site,
        "Create a site",
        Access.ANY,
        ok=201,
        body=schemas.SITE_IN,
        response=schemas.SITE,
        errors=(400, 409, 413, 422),
    ),
    Route(
        "GET",
        f"{V1}/sites",
        sites.list_sites_handler,
        "List sites",
        Access.ANY,
        response=schemas.list_of("sites", schemas.SITE),
    ),
    Route(
        "GET",
        f"{V1}/sites/{{site_id}}",
        sites.get_site_handler,
        "One site",
        Access.ANY,
        response=schemas.SITE,
        errors=(404,),
    ),
    Route(
        "PATCH",
        f"{V1}/sites/{{site_id}}",
        sites.patch_site,
        "Change a site (settings merged key by key)",
        Access.ANY,
        body=schemas.SITE_PATCH,
        response=schemas.SITE,
        errors=(400, 404, 409, 413, 422),
    ),
    Route(
        "DELETE",
        f"{V1}/sites/{{site_id}}",
        sites.delete_site,
        "Delete a site: sockets closed, pool back to the reserve, calls kept",
        Access.ANY,
        response=schemas.SITE_DELETED,
        errors=(404,),
    ),
    Route(
        "POST",
        f"{V1}/sites/{{site_id}}/numbers",
        numbers.add_site_numbers,
        "Move reserve numbers into the pool, all or nothing",
        Access.ANY,
        body=schemas.SITE_NUMBERS_IN,
        response=schemas.SITE_NUMBERS_ADDED,
        errors=(400, 404, 409, 413, 422),
    ),
    Route(
        "DELETE",
        f"{V1}/sites/{{site_id}}/numbers/{{e164}}",
        numbers.remove_site_number,
        "Return a pool number to the reserve (it cools down)",
        Access.ANY,
        response=schemas.NUMBER,
        errors=(404, 409, 422),
    ),
    Route(
        "GET",
        f"{V1}/sites/{{site_id}}/pool",
        numbers.site_pool,
        "The pool with states",
        Access.ANY,
        response=schemas.POOL,
        errors=(404,),
    ),
    Route(
        "GET",
        f"{V1}/sites/{{site_id}}/report",
        reports.site_report,
        "A site's report",
        Access.ANY,
        query=(SINCE, UNTIL),
        response=schemas.REPORT,
        errors=(404, 422),
    ),
    Route(
        "GET",
        f"{V1}/sites/{{site_id}}/advice",
        advice.site_advice_handler,
        "Pool size and settings reaching a tracked share, from the site's own traffic",
        Access.ANY,
        query=(
            Param("target", *advice.TARGET_PARAM),
            Param("days", *advice.DAYS_PARAM),
        ),
        response=advice.ADVICE,
        errors=(404, 422),
    ),
    Route(
        "GET",
        f"{V1}/calls",
        calls.list_calls_handler,
        "Calls, newest first",
        Access.ANY,
        query=CALL_QUERY,
        response=schemas.CALL_PAGE,
        errors=(404, 422),
    ),
    Route(
        "GET",
        f"{V1}/calls/{{call_id}}",
        calls.get_call,
        "One call",
        Access.ANY,
        response=schemas.CALL,
        errors=(404,),
    ),
    Route(
        "PATCH",
        f"{V1}/calls/{{call_id}}",
        calls.patch_call_handler,
        "Mark spam, add a note",
        Access.ANY,
        body=schemas.CALL_PATCH,
        response=schemas.CALL,
        errors=(400, 404, 413, 422),
    ),
    Route(
        "POST",
        f"{V1}/calls/{{call_id}}/exports/{{target}}/retry",
        calls.retry_export_handler,
        "Retry a failed export",
        Access.ANY,
        response=schemas.RETRIED,
        errors=(404, 409),
    ),
    Route(
        "GET",
        f"{V1}/calls/{{call_id}}/recording",
        recordings.recording,
        "The call's recording (HTTP Range; token or signed URL)",
        Access.SIGNED,
        query=SIGNED_QUERY,
        response=schemas.AUDIO,
        errors=(403, 404),
    ),
    Route(
        "DELETE",
        f"{V1}/callers/{{e164}}",
        recordings.erase_caller_handler,
        "Erase a caller's number and recordings",
        Access.ANY,
        response=schemas.ERASED,
        errors=(422,),
    ),
    Route(
        "DELETE",
        f"{V1}/tokens/{{prefix}}",
        tokens.revoke_token_handler,
        "Revoke a token (named by its first 12 characters): 401 from the next request on",
        Access.ANY,
        response=schemas.TOKEN_REVOKED,
        errors=(404, 409, 422),
    ),
)


# ---- dashboard product: live feed, qualification (tags, target calls), overview, test events --
ROUTES += (
    Route(
        "GET",
        f"{V1}/account",
        whoami.who_am_i,
        "Who this token is: the admin, or an account (with its time zone)",
        Access.ANY,
        response=product_schemas.WHOAMI,
    ),
    Route(
        "GET",
        f"{V1}/calls/stream",
        call_feed.call_stream,
        "Live calls (server-sent events `call`), with the list's filters",
        Access.ANY,
        query=tuple(p for p in CALL_QUERY if p.name not in ("limit", "cursor")),
        response={"type": "string", "description": "text/event-stream"},
        errors=(422,),
    ),
    Route(
        "GET",
        f"{V1}/overview",
        overview.get_overview,
        "Calls, tracked share, leads, missed calls, top sources: a period against the one before",
        Access.ANY,
        query=(
            Param("site", _string("site id"), "one site's calls"),
            ACCOUNT_PARAM,
            Param("period", {"type": "string", "enum": ["today", "7d", "30d"]}, "default 7d"),
            SINCE,
            UNTIL,
        ),
        response=product_schemas.OVERVIEW,
        errors=(404, 422),
    ),
    Route(
        "POST",
        f"{V1}/sites/{{site_id}}/test-event",
        test_events.send_test_event,
        "Send one test event to one of the site's analytics targets",
        Access.ANY,
        body=product_schemas.TEST_EVENT_IN,
        response=product_schemas.TEST_EVENT,
        errors=(400, 404, 413, 422),
    ),
    Route(
        "GET",
        f"{V1}/qualification",
        qualification.get_qualification,
        "The account's call tags and target-call rule",
        Access.ANY,
        query=(ACCOUNT_PARAM,),
        response=product_schemas.QUALIFICATION,
        errors=(404, 422),
    ),
    Route(
        "PUT",
        f"{V1}/qualification",
        qualification.put_qualification,
        "Set the account's call tags (dropped tags leave its calls) and target-call rule",
        Access.ANY,
        query=(ACCOUNT_PARAM,),
        body=product_schemas.QUALIFICATION_IN,
        response=product_schemas.QUALIFICATION,
        errors=(400, 404, 413, 422),
    ),
)


async def openapi_json(ctx: Ctx) -> web.StreamResponse:
    from web.api.openapi import build_document

    return web.json_response(build_document(ROUTES))


ROUTES += (
    Route(
        "GET",
        f"{V1}/openapi.json",
        openapi_json,
        "This document",
        Access.PUBLIC,
        response={"type": "object"},
    ),
)

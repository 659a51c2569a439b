"""The API's error bodies: `{"error": {"code", "message", "field"?}}` with a stable `code`.

The exception tree (domain errors from calltracking.core.errors plus the HTTP-only ones here):

    DomainError
    ├── InvalidInput      422 invalid (names the `field`)
    ├── BadRequest        400 invalid (the body is not a JSON object)
    ├── NotFound          404 not_found (also recording_missing, recording_refused)
    ├── Conflict          409 conflict
    ├── PoolExhausted     409 pool_exhausted
    ├── Unauthorized      401 unauthorized
    ├── Forbidden         403 forbidden
    └── BodyTooLarge      413 too_large

A database that cannot be reached (connection refused or lost, a pool timeout, SQLite busy) is
503 `unavailable`, logged as one line per minute at most (`QuietLog`), not a traceback per
request. Anything else unexpected is 500 `internal` with one traceback. Paths are logged with
`%r` (escaped and cut short): a `%0A` in a URL cannot write a fake log line.

Only paths under /api/ get JSON errors; other routes keep aiohttp's own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from sqlalchemy import exc as sa_exc

from calltracking.core.errors import (
    Conflict,
    DomainError,
    InvalidInput,
    NotFound,
    PoolExhausted,
)
from calltracking.quiet_log import QuietLog

log = logging.getLogger(__name__)


class BadRequest(DomainError):
    code = "invalid"


class Unauthorized(DomainError):
    code = "unauthorized"


class Forbidden(DomainError):
    code = "forbidden"


class BodyTooLarge(DomainError):
    code = "too_large"


STATUS: tuple[tuple[type[DomainError], int], ...] = (
    (InvalidInput, 422),
    (BadRequest, 400),
    (NotFound, 404),
    (Conflict, 409),
    (PoolExhausted, 409),
    (Unauthorized, 401),
    (Forbidden, 403),
    (BodyTooLarge, 413),
)
HTTP_CODES = {
    400: "invalid",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
}
OUTAGE_LOG = web.AppKey("api_outage_log", QuietLog)
_OUTAGES = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    ConnectionError,
    TimeoutError,
)


def is_outage(exc: BaseException) -> bool:
    """The database (or its connection) is away, rather than this request being wrong."""
    if isinstance(exc, _OUTAGES):
        return True
    return isinstance(exc, sa_exc.DBAPIError) and bool(exc.connection_invalidated)


def status_of(exc: DomainError) -> int:
    for kind, status in STATUS:
        if isinstance(exc, kind):
            return status
    return 400


def error_response(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    response = web.json_response({"error": body}, status=status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="calltracking"'
    return response


@web.middleware
def api_errors(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    # Not a coroutine itself: other paths (a held websocket) keep no frame of ours.
    if not request.path.startswith("/api/"):
        return handler(request)
    return _api_errors(request, handler)


async def _api_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    outages = request.app.get(OUTAGE_LOG)
    try:
        response = await handler(request)
    except DomainError as exc:
        return error_response(status_of(exc), exc.code, exc.message, getattr(exc, "field", None))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = HTTP_CODES.get(exc.status, "error")
        message = "no such endpoint" if exc.status == 404 else exc.reason
        return error_response(exc.status, code, message)
    except Exception as exc:
        if is_outage(exc):
            if outages is not None:
                outages.failed(exc, asyncio.get_running_loop().time())
            return error_response(503, "unavailable", "the database is unavailable; try again")
        log.exception("API %s %r failed", request.method, request.path[:300])
        return error_response(500, "internal", "internal error; the server log has the details")
    if outages is not None:
        outages.recovered()
    return response

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

Only paths under /api/ get JSON errors; other routes keep aiohttp's own.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from calltracking.core.errors import (
    Conflict,
    DomainError,
    InvalidInput,
    NotFound,
    PoolExhausted,
)

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
async def api_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        return await handler(request)
    except DomainError as exc:
        return error_response(status_of(exc), exc.code, exc.message, getattr(exc, "field", None))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = HTTP_CODES.get(exc.status, "error")
        message = "no such endpoint" if exc.status == 404 else exc.reason
        return error_response(exc.status, code, message)
    except Exception:
        log.exception("API %s %s failed", request.method, request.path)
        return error_response(500, "internal", "internal error; the server log has the details")

"""Strict input checks. Every failure is InvalidInput naming the field (422), except a body that
is not a JSON object (400) or is over MAX_BODY bytes (413).

Rules: unknown fields and query parameters are refused; types are exact (a bool is not an
integer); numbers are E.164 only; times are ISO 8601 with an offset, between MIN_YEAR and
MAX_YEAR (so date arithmetic cannot overflow); `limit` is 1..500 in ASCII digits (`isdigit()`
also passes "²" and 5,000-digit strings). Text anywhere in a body, a query or a path has no
lone surrogate and no NUL (neither can be stored: UTF-8 and PostgreSQL refuse them); bodies
nest at most MAX_DEPTH deep and have no NaN or Infinity.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from calltracking.core.errors import InvalidInput
from calltracking.core.numbers import is_e164
from calltracking.store.queries.call_listing import CallCursor
from web.api.errors import BadRequest, BodyTooLarge

MAX_BODY = 64 * 1024
DEFAULT_LIMIT, MAX_LIMIT = 50, 500
MAX_DEPTH = 32
MIN_YEAR, MAX_YEAR = 1970, 9000
_LIMIT = re.compile(r"[0-9]{1,4}")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_CURSOR_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")


def storable(value: str) -> bool:
    """Text UTF-8 can encode and PostgreSQL can store: no lone surrogate, no NUL."""
    return _UNSTORABLE.search(value) is None


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _check_tree(value: Any) -> None:
    """Depth and text checks over a decoded body, without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadRequest(f"the body nests deeper than {MAX_DEPTH} levels")
        if isinstance(item, str) and not storable(item):
            raise BadRequest("the body has a NUL character or a lone surrogate")
        if isinstance(item, dict):
            stack.extend((key, depth) for key in item)
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)


async def read_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, read with a size limit whatever the headers say."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise BodyTooLarge(f"the body is over {MAX_BODY} bytes")
    data = bytearray()
    while chunk := await request.content.read(16 * 1024):
        data += chunk
        if len(data) > MAX_BODY:
            raise BodyTooLarge(f"the body is over {MAX_BODY} bytes")
    try:
        value = json.loads(data, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise BadRequest("the body must be a JSON object") from None
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object")
    _check_tree(value)
    return value


def check_fields(
    body: Mapping[str, Any],
    *,
    required: Collection[str] = (),
    optional: Collection[str] = (),
    prefix: str = "",
) -> None:
    for key in body:
        if key not in required and key not in optional:
            raise InvalidInput(prefix + key, "unknown field")
    for key in required:
        if key not in body:
            raise InvalidInput(prefix + key, "is required")


def text(value: Any, field: str, *, max_len: int = 200) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(field, "must be non-empty text")
    if len(value) > max_len:
        raise InvalidInput(field, f"must be at most {max_len} characters")
    return value.strip()


def integer(value: Any, field: str, *, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field, "must be a whole number")
    if not low <= value <= high:
        raise InvalidInput(field, f"must be between {low} and {high}")
    return value


def boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(field, "must be true or false")
    return value


def e164(value: Any, field: str) -> str:
    if not is_e164(value):
        raise InvalidInput(field, f"{value!r} is not an E.164 number (+ and 8 to 15 digits)")
    return str(value)


def e164_list(value: Any, field: str, *, max_items: int = 1000) -> list[str]:
    if not isinstance(value, list) or not value:
        raise InvalidInput(field, "must be a non-empty list of E.164 numbers")
    if len(value) > max_items:
        raise InvalidInput(field, f"at most {max_items} numbers at once")
    return [e164(item, f"{field}[{i}]") for i, item in enumerate(value)]


def check_query(request: web.Request, allowed: Collection[str]) -> None:
    for key, value in request.query.items():
        if key not in allowed:
            raise InvalidInput(key, "unknown query parameter")
        if not storable(value) or len(value) > 2000:
            raise InvalidInput(key, "has characters no value can have, or is too long")


def check_path(request: web.Request) -> None:
    """Path parameters are ids, numbers and words: refused when no such value could exist."""
    for name, value in request.match_info.items():
        if not storable(value) or len(value) > 200:
            raise InvalidInput(name, "has characters no value can have, or is too long")


def limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not _LIMIT.fullmatch(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidInput("limit", f"must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def timestamp(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(name, "must be an ISO 8601 time with offset") from None
    if moment.tzinfo is None:
        raise InvalidInput(name, "needs a UTC offset (e.g. 2026-11-25T10:00:00+03:00)")
    if not in_range(moment):
        raise InvalidInput(name, f"must be between the years {MIN_YEAR} and {MAX_YEAR}")
    return moment


def in_range(moment: datetime) -> bool:
    try:
        return MIN_YEAR <= moment.astimezone(UTC).year <= MAX_YEAR
    except (OverflowError, ValueError):
        return False


def choice(request: web.Request, name: str, allowed: Collection[str]) -> str | None:
    raw = request.query.get(name)
    if raw is not None and raw not in allowed:
        raise InvalidInput(name, f"must be one of {', '.join(sorted(allowed))}")
    return raw


def encode_cursor(cursor: CallCursor) -> str:
    raw = f"{cursor.started_at.isoformat()}|{cursor.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(request: web.Request) -> CallCursor | None:
    raw = request.query.get("cursor")
    if raw is None:
        return None
    try:
        text_ = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        moment, _, call_id = text_.partition("|")
        started = datetime.fromisoformat(moment)
    except (ValueError, binascii.Error):
        raise InvalidInput("cursor", "is not a cursor this API gave") from None
    if started.tzinfo is None or not in_range(started) or not _CURSOR_ID.fullmatch(call_id):
        raise InvalidInput("cursor", "is not a cursor this API gave")
    return CallCursor(started, call_id)

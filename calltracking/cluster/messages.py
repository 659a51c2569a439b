"""What a node forwards to a site's owner, and what the owner answers: JSON both ways.

Rules:
- One request per decider operation that a socket's node cannot make itself: a hello, a tab's
  activity or `want`, its visibility, its close, and a visitor's current number. Each carries
  the site, the time the socket's node read from its clock (the owner decides at that time),
  and what the operation needs; a hello carries the tab id and node id the tab's row gets,
  since the tab lives on the socket's node.
- Requests to one shard that a node makes in the same turn of its event loop travel as one
  batch, `{"requests": [...]}`, answered by one message, `{"replies": [...]}` in the same
  order: two messages per batch instead of two per change. A reply is `{"ok": ...}` with the
  operation's result, or `{"error": "..."}`, which the forwarding node raises as
  `ForwardRefused`; one bad request in a batch gets its own error, the others their answers.
- Decoding is strict: a body that is not exactly such an object (unknown operation, wrong
  types, oversized text, a time without its zone) raises `Malformed` and nothing else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from calltracking.core.kinds import DisplayKind
from calltracking.store.visitors import Hello, Shown, Welcome

MAX_TEXT = 8192  # longer than any field the websocket accepts
MAX_IDS = 10_000  # visitors a reply may name as changed
MAX_BATCH = 1_000  # requests in one message


class Malformed(ValueError):
    """A request or reply that is not what this module writes."""


class ForwardRefused(Exception):
    """The owner could not carry out the request (its error travels in the reply)."""


class ForwardFailed(Exception):
    """No reply came: not connected, the owner went away, or it did not answer in time."""


class NoOwner(Exception):
    """No node holds the site's shard."""


@dataclass(frozen=True, slots=True)
class HelloRequest:
    site_id: str
    now: datetime
    node_id: str
    tab_id: str
    hello: Hello


@dataclass(frozen=True, slots=True)
class VisitorEventRequest:
    site_id: str
    now: datetime
    kind: Literal["activity", "want"]
    visitor_id: str
    tab_id: str  # "" for want


@dataclass(frozen=True, slots=True)
class VisibilityRequest:
    site_id: str
    now: datetime
    visitor_id: str
    tab_id: str
    visible: bool


@dataclass(frozen=True, slots=True)
class CloseRequest:
    site_id: str
    now: datetime
    visitor_id: str
    tab_id: str


@dataclass(frozen=True, slots=True)
class CurrentRequest:
    site_id: str
    now: datetime
    visitor_id: str


Request = HelloRequest | VisitorEventRequest | VisibilityRequest | CloseRequest | CurrentRequest
ChangedVisitors = tuple[Shown, set[str]]
# What each request's operation returns, in request order above.
Result = Welcome | ChangedVisitors | None | set[str] | Shown


# -- requests -----------------------------------------------------------------------------------


def encode_batch(requests: list[Request]) -> bytes:
    """One message for several requests to one shard's owner."""
    return _dumps({"requests": [request_json(r) for r in requests]})


def decode_batch(raw: bytes) -> list[Request | Malformed]:
    """The batch's requests, each one decoded or the reason it could not be; `Malformed` when
    the message itself is not a batch."""
    items = _object(_json(raw), "batch").get("requests")
    if not isinstance(items, list) or not 0 < len(items) <= MAX_BATCH:
        raise Malformed(f"a batch holds a list of 1..{MAX_BATCH} requests")
    decoded: list[Request | Malformed] = []
    for item in items:
        try:
            decoded.append(request_from(item))
        except Malformed as exc:
            decoded.append(exc)
    return decoded


def encode_replies(replies: list[dict[str, Any]]) -> bytes:
    """The answers to a batch, in its order (each `reply_json` or `error_json`)."""
    return _dumps({"replies": replies})


def encode_batch_error(message: str) -> bytes:
    """The answer to a message that is not a batch at all."""
    return _dumps(error_json(message))


def decode_replies(raw: bytes, count: int) -> list[object]:
    """A batch's answers, each to be read with `result_from`; `ForwardRefused` when the owner
    refused the whole batch."""
    body = _object(_json(raw), "replies")
    if "error" in body:
        raise ForwardRefused(_text(body, "error", empty=True))
    replies = body.get("replies")
    if not isinstance(replies, list) or len(replies) != count:
        raise Malformed(f"expected {count} replies")
    return replies


def request_json(request: Request) -> dict[str, Any]:
    body: dict[str, Any] = {"site": request.site_id, "now": request.now.isoformat()}
    match request:
        case HelloRequest():
            h = request.hello
            body |= {
                "op": "hello",
                "node": request.node_id,
                "tab": request.tab_id,
                "hello": {
                    "url": h.url,
                    "referrer": h.referrer,
                    "visitor": h.visitor_id,
                    "ga": h.ga,
                    "ga_session": h.ga_session,
                    "ga_cookies": dict(h.ga_cookies) if h.ga_cookies is not None else None,
                    "ym": h.ym,
                    "user_agent": h.user_agent,
                    "automated": h.automated,
                    "address": h.address,
                },
            }
        case VisitorEventRequest():
            body |= {
                "op": request.kind,
                "visitor": request.visitor_id,
                "tab": request.tab_id,
            }
        case VisibilityRequest():
            body |= {
                "op": "visibility",
                "visitor": request.visitor_id,
                "tab": request.tab_id,
                "visible": request.visible,
            }
        case CloseRequest():
            body |= {"op": "close", "visitor": request.visitor_id, "tab": request.tab_id}
        case CurrentRequest():
            body |= {"op": "current", "visitor": request.visitor_id}
    return body


def request_from(value: object) -> Request:
    body = _object(value, "request")
    op = body.get("op")
    site_id = _text(body, "site")
    now = _time(body, "now")
    if op == "hello":
        h = _object(body.get("hello"), "hello")
        hello = Hello(
            url=_text(h, "url", empty=True),
            referrer=_text(h, "referrer", empty=True),
            visitor_id=_optional_text(h, "visitor"),
            ga=_optional_text(h, "ga"),
            ga_session=_optional_text(h, "ga_session"),
            ga_cookies=_optional_texts(h, "ga_cookies"),
            ym=_optional_text(h, "ym"),
            user_agent=_optional_text(h, "user_agent"),
            automated=_flag(h, "automated"),
            address=_text(h, "address", empty=True),
        )
        return HelloRequest(site_id, now, _text(body, "node"), _text(body, "tab"), hello)
    if op == "activity":
        return VisitorEventRequest(
            site_id, now, "activity", _text(body, "visitor"), _text(body, "tab")
        )
    if op == "want":
        return VisitorEventRequest(
            site_id, now, "want", _text(body, "visitor"), _text(body, "tab", empty=True)
        )
    if op == "visibility":
        return VisibilityRequest(
            site_id, now, _text(body, "visitor"), _text(body, "tab"), _flag(body, "visible")
        )
    if op == "close":
        return CloseRequest(site_id, now, _text(body, "visitor"), _text(body, "tab"))
    if op == "current":
        return CurrentRequest(site_id, now, _text(body, "visitor"))
    raise Malformed(f"unknown operation {op!r}")


# -- replies ------------------------------------------------------------------------------------


def reply_json(request: Request, result: Result) -> dict[str, Any]:
    value: Any
    match request:
        case HelloRequest():
            assert isinstance(result, Welcome)
            value = {
                "visitor": result.visitor_id,
                "visit": result.visit_id,
                "tab": result.tab_id,
                "shown": _shown_json(result.shown),
                "changed": sorted(result.changed),
            }
        case VisitorEventRequest():
            assert isinstance(result, tuple)
            shown, changed = result
            value = {"shown": _shown_json(shown), "changed": sorted(changed)}
        case VisibilityRequest():
            value = None
        case CloseRequest():
            assert isinstance(result, set)
            value = sorted(result)
        case CurrentRequest():
            assert result is None or isinstance(result, Shown)
            value = None if result is None else _shown_json(result)
    return {"ok": value}


def error_json(message: str) -> dict[str, Any]:
    return {"error": message[:MAX_TEXT]}


def result_from(request: Request, value: object) -> Result:
    """The operation's result; `ForwardRefused` for an error reply, `Malformed` for garbage."""
    body = _object(value, "reply")
    if "error" in body:
        raise ForwardRefused(_text(body, "error", empty=True))
    if "ok" not in body:
        raise Malformed("a reply has 'ok' or 'error'")
    value = body["ok"]
    match request:
        case HelloRequest():
            v = _object(value, "welcome")
            return Welcome(
                visitor_id=_text(v, "visitor"),
                visit_id=_text(v, "visit", empty=True),
                tab_id=_text(v, "tab"),
                shown=_shown(v.get("shown")),
                changed=frozenset(_ids(v.get("changed"))),
            )
        case VisitorEventRequest():
            v = _object(value, "result")
            return _shown(v.get("shown")), _ids(v.get("changed"))
        case VisibilityRequest():
            if value is not None:
                raise Malformed("visibility answers nothing")
            return None
        case CloseRequest():
            return _ids(value)
        case CurrentRequest():
            return None if value is None else _shown(value)


def _shown_json(shown: Shown) -> dict[str, str]:
    return {"kind": str(shown.kind), "e164": shown.e164, "display": shown.display}


def _shown(value: object) -> Shown:
    v = _object(value, "shown")
    try:
        kind = DisplayKind(_text(v, "kind"))
    except ValueError:
        raise Malformed(f"unknown display kind {v.get('kind')!r}") from None
    return Shown(kind, _text(v, "e164", empty=True), _text(v, "display", empty=True))


# -- strict readers -----------------------------------------------------------------------------


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _json(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise Malformed(f"not JSON: {exc}") from None
    except RecursionError:
        raise Malformed("nested too deep") from None


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Malformed(f"{what} is not an object")
    return value


def _text(body: dict[str, Any], key: str, *, empty: bool = False) -> str:
    value = body.get(key)
    if not isinstance(value, str) or len(value) > MAX_TEXT or (not value and not empty):
        raise Malformed(f"{key!r} is not a text of 1..{MAX_TEXT} characters")
    return value


def _optional_text(body: dict[str, Any], key: str) -> str | None:
    return None if body.get(key) is None else _text(body, key, empty=True)


def _optional_texts(body: dict[str, Any], key: str) -> dict[str, str] | None:
    value = body.get(key)
    if value is None:
        return None
    mapping = _object(value, key)
    if len(mapping) > 64:
        raise Malformed(f"{key!r} has more than 64 entries")
    if any(len(name) > MAX_TEXT for name in mapping):
        raise Malformed(f"{key!r} has a name longer than {MAX_TEXT}")
    return {name: _text(mapping, name, empty=True) for name in mapping}


def _flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key)
    if not isinstance(value, bool):
        raise Malformed(f"{key!r} is not true or false")
    return value


def _time(body: dict[str, Any], key: str) -> datetime:
    text = _text(body, key)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise Malformed(f"{key!r} is not an ISO time") from None
    if value.tzinfo is None:
        raise Malformed(f"{key!r} has no time zone")
    return value


def _ids(value: object) -> set[str]:
    if not isinstance(value, list) or len(value) > MAX_IDS:
        raise Malformed(f"changed visitors are not a list of at most {MAX_IDS}")
    ids = set()
    for item in value:
        if not isinstance(item, str) or not item or len(item) > MAX_TEXT:
            raise Malformed("a changed visitor is not an id")
        ids.add(item)
    return ids

"""GA4 Measurement Protocol: one `phone_call` event per tracked call.

Rules (CONTRACT.md "Analytics export"; TECH_NOTES §3):
- Only tracked (`dynamic`, `held`, `cooled`), non-spam calls with a visitor session whose `_ga`
  client id reads `<digits>.<digits>` are sent; anything else is `Skipped` with the reason.
- `timestamp_micros` is the call's start; GA4 accepts at most 72 hours back, so an older call is
  `Skipped` (a call exactly 72 hours old is still sent). A start later than `now` (clock skew
  between PBX and tracker) is sent as `now`.
- `session_id` joins the call to the visit only when the call started within 24 hours of the
  session's start (GA4 attributes no later); later calls still count for the client.
- The collect endpoint answers 2xx even to payloads it drops, so every payload is checked by
  `validate_ga4_payload` (the rules the debug endpoint applies) before it is sent; the builder
  truncates text so that a valid call always builds a valid payload.
- Qualification goes along when there is any: `target_call` (1/0) when the account has a
  target-call rule, `tags` (comma-joined, cut to the 100-character value limit) when the call
  has tags; 14 parameters at most, well within GA4's 25.
- The api_secret travels only in the request URL: never in a log line or an outcome reason.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from calltracking.core.records import CallRecord
from calltracking.core.settings import Ga4Target
from calltracking.exporters.http import request
from calltracking.exporters.outcome import (
    Hopeless,
    Outcome,
    Skipped,
    outcome_for_status,
)

log = logging.getLogger(__name__)

DEFAULT_GA4_ENDPOINT = "https://www.google-analytics.com"
EVENT_NAME = "phone_call"
MAX_AGE = timedelta(hours=72)
SESSION_JOIN_WINDOW = timedelta(hours=24)

# Documented limits (developers.google.com .../ga4/sending-events#limitations).
MAX_EVENTS = 25
MAX_PARAMS = 25
MAX_NAME_LEN = 40
MAX_VALUE_LEN = 100
MAX_BODY_BYTES = 130_000  # "Post body must be smaller than 130kB"
MAX_CLIENT_ID_LEN = 100

NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
CLIENT_ID_RE = re.compile(r"[0-9]{1,20}\.[0-9]{1,20}")
_GA_COOKIE_RE = re.compile(r"GA\d+\.\d+\.([0-9]+\.[0-9]+)")
_SESSION_ID_RE = re.compile(r"[0-9]{1,20}")

# Measurement Protocol reference "Reserved names" plus the web list of the naming rules page.
# fmt: off
RESERVED_EVENT_NAMES = frozenset({
    "ad_activeview", "ad_click", "ad_exposure", "ad_impression", "ad_query", "ad_reward",
    "adunit_exposure", "app_background", "app_clear_data", "app_exception", "app_install",
    "app_remove", "app_store_refund", "app_store_subscription_cancel",
    "app_store_subscription_convert", "app_store_subscription_renew", "app_update",
    "app_upgrade", "click", "dynamic_link_app_open", "dynamic_link_app_update",
    "dynamic_link_first_open", "error", "file_download", "firebase_campaign",
    "firebase_in_app_message_action", "firebase_in_app_message_dismiss",
    "firebase_in_app_message_impression", "first_open", "first_visit", "form_start",
    "form_submit", "in_app_purchase", "notification_dismiss", "notification_foreground",
    "notification_open", "notification_receive", "notification_send", "os_update",
    "page_view", "screen_view", "scroll", "session_start", "user_engagement",
    "view_complete", "video_progress", "video_start", "view_search_results",
})
# fmt: on
RESERVED_PARAM_NAMES = frozenset({"firebase_conversion"})
RESERVED_PREFIXES = ("_", "ga_", "google_", "firebase_")


class Ga4DebugError(Exception):
    """The debug endpoint answered something else than its validation messages."""


def build_ga4_payload(call: CallRecord, now: datetime) -> dict[str, Any] | Skipped:
    """The Measurement Protocol body for `call`, or why it is not to be sent."""
    if call.spam:
        return Skipped("spam")
    if not call.kind.tracked:
        return Skipped(f"untracked ({call.kind})")
    session = call.session
    if session is None:
        return Skipped("no visitor session")
    client_id = normalise_client_id(session.ga_client_id)
    if client_id is None:
        return Skipped("no GA client id")
    if now - call.started_at > MAX_AGE:
        return Skipped("older than 72 hours")
    at = min(call.started_at, now)
    params: dict[str, str | int] = {}
    session_id = _session_id(call)
    if session_id is not None:
        params["session_id"] = session_id
    params["source"] = _text(session.source)
    params["medium"] = _text(session.medium)
    if session.campaign:
        params["campaign"] = _text(session.campaign)
    params["call_status"] = str(call.status)
    params["duration_s"] = call.duration_s
    params["talk_s"] = call.talk_s
    params["attribution_kind"] = str(call.kind)
    if call.target_call is not None:  # only when the account has a target-call rule
        params["target_call"] = int(call.target_call)
    if call.tags:
        params["tags"] = _text(", ".join(call.tags))
    params["engagement_time_msec"] = 1
    return {
        "client_id": client_id,
        "timestamp_micros": to_micros(at),
        "events": [{"name": EVENT_NAME, "params": params}],
    }


def normalise_client_id(raw: str | None) -> str | None:
    """`X.Y` from a client id or a whole `_ga` cookie value (`GA1.1.X.Y`); None when unusable."""
    if raw is None:
        return None
    text = raw.strip()
    cookie = _GA_COOKIE_RE.fullmatch(text)
    if cookie is not None:
        text = cookie.group(1)
    return text if CLIENT_ID_RE.fullmatch(text) else None


def to_micros(at: datetime) -> int:
    """Exact Unix microseconds of an aware datetime (no float rounding)."""
    delta = at - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _session_id(call: CallRecord) -> str | None:
    session = call.session
    if session is None or session.ga_session_id is None:
        return None
    session_id = session.ga_session_id.strip()
    if not _SESSION_ID_RE.fullmatch(session_id):
        return None
    # GA4's session id is the session's start in Unix seconds: the fallback start time.
    if session.started_at is not None:
        start = session.started_at
    else:
        try:
            start = datetime.fromtimestamp(int(session_id), UTC)
        except (OverflowError, OSError, ValueError):
            return None
    offset = call.started_at - start
    # A little slack before the start: the visit's clock is the browser's, the call's the PBX's.
    if not -timedelta(minutes=5) <= offset <= SESSION_JOIN_WINDOW:
        return None
    return session_id


def _text(value: str) -> str:
    # Lone surrogates cannot be encoded as UTF-8 JSON: replace them rather than fail.
    return value.encode("utf-8", "replace").decode("utf-8")[:MAX_VALUE_LEN]


def validate_ga4_payload(payload: Mapping[str, Any], now: datetime | None = None) -> list[str]:
    """Problems GA4 would find with `payload` (empty when valid); with `now`, also its times."""
    problems: list[str] = []
    client_id = payload.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        problems.append("client_id: required string")
    elif len(client_id) > MAX_CLIENT_ID_LEN or not CLIENT_ID_RE.fullmatch(client_id):
        problems.append("client_id: not a GA client id (digits.digits)")
    problems += _timestamp_problems("timestamp_micros", payload.get("timestamp_micros"), now)
    events = payload.get("events")
    if not isinstance(events, list) or not events:
        problems.append("events: required non-empty list")
    elif len(events) > MAX_EVENTS:
        problems.append(f"events: more than {MAX_EVENTS}")
    else:
        for i, event in enumerate(events):
            problems += _event_problems(f"events[{i}]", event, now)
    try:
        size = len(encode_payload(payload))
    except (TypeError, ValueError):
        problems.append("body: not JSON")
    else:
        if size >= MAX_BODY_BYTES:
            problems.append(f"body: {size} bytes, must be smaller than {MAX_BODY_BYTES}")
    return problems


def _event_problems(path: str, event: Any, now: datetime | None) -> list[str]:
    if not isinstance(event, Mapping):
        return [f"{path}: must be an object"]
    problems = _name_problems(f"{path}.name", event.get("name"), RESERVED_EVENT_NAMES)
    problems += _timestamp_problems(f"{path}.timestamp_micros", event.get("timestamp_micros"), now)
    params = event.get("params", {})
    if not isinstance(params, Mapping):
        return [*problems, f"{path}.params: must be an object"]
    if len(params) > MAX_PARAMS:
        problems.append(f"{path}.params: more than {MAX_PARAMS}")
    for name, value in params.items():
        problems += _name_problems(f"{path}.params.{name}", name, RESERVED_PARAM_NAMES)
        if isinstance(value, str) and len(value) > MAX_VALUE_LEN:
            problems.append(f"{path}.params.{name}: value longer than {MAX_VALUE_LEN}")
        elif not isinstance(value, str | int | float) or isinstance(value, bool):
            problems.append(f"{path}.params.{name}: value must be a string or a number")
    return problems


def _name_problems(path: str, name: Any, reserved: frozenset[str]) -> list[str]:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        return [f"{path}: name must start with a letter and hold only letters, digits, _"]
    if len(name) > MAX_NAME_LEN:
        return [f"{path}: name longer than {MAX_NAME_LEN}"]
    if name in reserved or name.startswith(RESERVED_PREFIXES):
        return [f"{path}: name is reserved"]
    return []


def _timestamp_problems(path: str, value: Any, now: datetime | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return [f"{path}: must be a whole number of microseconds"]
    if now is None:
        return []
    if value > to_micros(now):
        return [f"{path}: in the future"]
    if value < to_micros(now - MAX_AGE):
        return [f"{path}: more than 72 hours back"]
    return []


def encode_payload(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


async def send_ga4(
    session: aiohttp.ClientSession,
    endpoint: str,
    target: Ga4Target,
    payload: Mapping[str, Any],
    timeout_s: float = 10,
) -> Outcome:
    """POST `payload` to `{endpoint}/mp/collect`; never raises for the peer's behaviour."""
    detail = f"ga4 {target.measurement_id}"
    problems = validate_ga4_payload(payload)
    if problems:
        return Hopeless(f"{detail}: invalid payload: {'; '.join(problems)}")
    url = f"{endpoint.rstrip('/')}/mp/collect"
    query = {"measurement_id": target.measurement_id, "api_secret": target.api_secret}
    answer = await request(
        session,
        "POST",
        url,
        detail=detail,
        timeout_s=timeout_s,
        secret=target.api_secret,
        params=query,
        data=encode_payload(payload),
        headers={"Content-Type": "application/json"},
    )
    outcome = answer if not isinstance(answer, tuple) else outcome_for_status(answer[0], detail)
    log.debug("ga4 send to %s: %s", target.measurement_id, outcome)
    return outcome


async def debug_ga4(
    session: aiohttp.ClientSession,
    endpoint: str,
    target: Ga4Target,
    payload: Mapping[str, Any],
    timeout_s: float = 10,
) -> list[dict[str, Any]]:
    """GA4's own verdict on `payload` from `/debug/mp/collect`: its validationMessages.

    For set-up checks and tests; debug hits never reach reports. Raises `Ga4DebugError` on a
    non-200 answer, `aiohttp.ClientError` or `TimeoutError` when the endpoint cannot be asked.
    """
    url = f"{endpoint.rstrip('/')}/debug/mp/collect"
    query = {"measurement_id": target.measurement_id, "api_secret": target.api_secret}
    async with session.post(
        url,
        params=query,
        data=encode_payload(payload),
        headers={"Content-Type": "application/json"},
        timeout=aiohttp.ClientTimeout(total=timeout_s),
    ) as response:
        if response.status != 200:
            # Not raise_for_status(): its message would carry the URL, api_secret included.
            raise Ga4DebugError(f"ga4 debug endpoint answered HTTP {response.status}")
        body = await response.json(content_type=None)
    messages = body.get("validationMessages", []) if isinstance(body, dict) else []
    return [m for m in messages if isinstance(m, dict)]

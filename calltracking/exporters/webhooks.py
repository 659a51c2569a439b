"""Webhooks: signed POSTs of event bodies, and the check a receiver makes.

Rules (CONTRACT.md "Analytics export", "Event bus"):
- The body is the event envelope as JSON (`{"event", "id", "occurred_at", "data"}`), UTF-8.
- `X-Calltracking-Timestamp` is the send time in Unix seconds; `X-Calltracking-Signature` is
  `sha256=<hex HMAC-SHA256 of "<timestamp>." + body>` keyed with the webhook's secret, so a
  receiver can tell the sender knew the secret and that neither body nor time was changed.
- `X-Calltracking-Event` names the event, `X-Calltracking-Delivery` is the event id: retries
  carry the same id, so receivers deduplicate on it.
- `verify` compares in constant time and refuses timestamps more than `tolerance_s` away from
  the receiver's clock, so a captured request cannot be replayed later.
- Redirects are not followed (the signature was made for the configured URL).
- A target takes an event when one of its `events` is the key itself or a pattern that matches
  it: `call.*`, `*` (shell-style, case-sensitive).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import datetime
from fnmatch import fnmatchcase

import aiohttp
from yarl import URL

from calltracking.core.events import Event
from calltracking.core.settings import WebhookTarget
from calltracking.exporters.http import request
from calltracking.exporters.outcome import Hopeless, Outcome, outcome_for_status

log = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-Calltracking-Timestamp"
SIGNATURE_HEADER = "X-Calltracking-Signature"
EVENT_HEADER = "X-Calltracking-Event"
DELIVERY_HEADER = "X-Calltracking-Delivery"
SCHEME = "sha256="
USER_AGENT = "calltracking-webhooks/1"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256(secret, "<timestamp>." + body)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return SCHEME + mac.hexdigest()


def verify(
    secret: str,
    timestamp_header: str | None,
    signature_header: str | None,
    body: bytes,
    now: datetime,
    tolerance_s: int = 300,
) -> bool:
    """True when the request was signed with `secret` for this body, within `tolerance_s`."""
    if not timestamp_header or not signature_header:
        return False
    text = timestamp_header.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        return False
    timestamp = int(text)
    if abs(now.timestamp() - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body)
    return hmac.compare_digest(expected.encode(), signature_header.strip().encode())


def matches(target: WebhookTarget, event_key: str) -> bool:
    """Whether `target` subscribed to `event_key` (exact key or a pattern such as `call.*`)."""
    return any(pattern == event_key or fnmatchcase(event_key, pattern) for pattern in target.events)


def encode_event(event: Event) -> bytes:
    return json.dumps(event.to_json(), ensure_ascii=False, separators=(",", ":")).encode()


async def deliver(
    session: aiohttp.ClientSession,
    target: WebhookTarget,
    event: Event,
    now: datetime,
    *,
    timeout_s: float = 10,
) -> Outcome:
    """POST the signed event to the target; never raises for the receiver's behaviour."""
    detail = f"webhook {event.key} {event.id}"
    try:
        body = encode_event(event)
    except (TypeError, ValueError) as exc:
        return Hopeless(f"{detail}: event body is not JSON: {exc}")
    timestamp = int(now.timestamp())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(target.secret, timestamp, body),
        EVENT_HEADER: event.key,
        DELIVERY_HEADER: event.id,
    }
    answer = await request(
        session,
        "POST",
        target.url,
        detail=detail,
        timeout_s=timeout_s,
        data=body,
        headers=headers,
    )
    outcome = answer if not isinstance(answer, tuple) else outcome_for_status(answer[0], detail)
    log.debug("%s to %s: %s", detail, _host(target.url), outcome)
    return outcome


def _host(url: str) -> str:
    """Only the host: a URL's path or query may carry a receiver's token."""
    return URL(url).host or "?"

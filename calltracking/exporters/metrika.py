"""Yandex Metrika calls upload (Management API), batched.

Rules (CONTRACT.md "Analytics export"; TECH_NOTES §4):
- One CSV per batch, UTF-8, header `ClientId,DateTime,PhoneNumber,TalkDuration,HoldDuration,
  CallMissed,FirstTimeCaller,URL,Tag`; `DateTime` is the call's start in Unix seconds (UTC, never
  later than `now`), `PhoneNumber` the caller in E.164 (empty when withheld), `CallMissed` 1 when
  the call was never answered, `URL` the landing page (http(s) only, else empty), `Tag` the
  attribution kind.
- Only tracked, non-spam calls whose visitor has a Metrika ClientID (digits) are uploaded, and
  only within 21 days of the call (Metrika joins no older session); the others come back as
  `Skipped` with the reason, so the caller can record them.
- 429 and 420 are Metrika's quota answers (the docs name both): `RetryLater`; 400/401/403 cannot
  succeed as sent: `Hopeless`. The OAuth token travels only in the `Authorization` header.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from calltracking.core.kinds import CallStatus
from calltracking.core.records import CallRecord
from calltracking.core.settings import MetrikaTarget
from calltracking.exporters.http import request
from calltracking.exporters.outcome import (
    Hopeless,
    Outcome,
    RetryLater,
    Sent,
    Skipped,
    outcome_for_status,
)

log = logging.getLogger(__name__)

DEFAULT_METRIKA_ENDPOINT = "https://api-metrika.yandex.net"
CSV_COLUMNS = (
    "ClientId",
    "DateTime",
    "PhoneNumber",
    "TalkDuration",
    "HoldDuration",
    "CallMissed",
    "FirstTimeCaller",
    "URL",
    "Tag",
)
MAX_AGE = timedelta(days=21)
UPLOAD_COMMENT = "calltracking"

CLIENT_ID_RE = re.compile(r"[0-9]{1,40}")
_E164_RE = re.compile(r"\+[0-9]{8,15}")
_COUNTER_RE = re.compile(r"[0-9]{1,20}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class UploadResult:
    """Metrika's receipt for an upload; `status` moves on (see `upload_status`)."""

    id: str
    status: str
    line_quantity: int | None = None


class MetrikaError(Exception):
    """An upload-status query failed; `outcome` says whether asking again may help."""

    def __init__(self, outcome: RetryLater | Hopeless) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome


def build_calls_csv(
    calls: Sequence[CallRecord], now: datetime
) -> tuple[str, list[str], list[tuple[str, Skipped]]]:
    """The upload's CSV, the ids of the calls in it, and the calls left out with the reason."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    included: list[str] = []
    skipped: list[tuple[str, Skipped]] = []
    for call in calls:
        row = _row(call, now)
        if isinstance(row, Skipped):
            skipped.append((call.id, row))
        else:
            writer.writerow(row)
            included.append(call.id)
    return out.getvalue(), included, skipped


def _row(call: CallRecord, now: datetime) -> list[str] | Skipped:
    if call.spam:
        return Skipped("spam")
    if not call.kind.tracked:
        return Skipped(f"untracked ({call.kind})")
    session = call.session
    client_id = (session.ym_client_id or "").strip() if session is not None else ""
    if not CLIENT_ID_RE.fullmatch(client_id):
        return Skipped("no Metrika client id")
    if now - call.started_at > MAX_AGE:
        return Skipped("older than 21 days")
    answered = call.answered_at is not None or call.status is CallStatus.ANSWERED
    landing = _CONTROL_RE.sub("", (session.landing_url or "") if session is not None else "")
    return [
        client_id,
        str(int(min(call.started_at, now).timestamp())),
        call.caller if call.caller and _E164_RE.fullmatch(call.caller) else "",
        str(call.talk_s),
        str(call.hold_s),
        "0" if answered else "1",
        "1" if call.first_time_caller else "0",
        landing if landing.startswith(("http://", "https://")) else "",
        str(call.kind),
    ]


def _base(endpoint: str, target: MetrikaTarget) -> str | Hopeless:
    if not _COUNTER_RE.fullmatch(target.counter_id):
        return Hopeless(f"metrika: counter id {target.counter_id!r} is not a number")
    root = endpoint.rstrip("/") or DEFAULT_METRIKA_ENDPOINT
    return f"{root}/management/v1/counter/{target.counter_id}/offline_conversions"


def _headers(target: MetrikaTarget) -> dict[str, str]:
    return {"Authorization": f"OAuth {target.token}"}


async def upload_calls(
    session: aiohttp.ClientSession,
    endpoint: str,
    target: MetrikaTarget,
    csv_text: str,
    *,
    comment: str = UPLOAD_COMMENT,
    timeout_s: float = 60,
) -> UploadResult | Outcome:
    """POST the CSV to `upload_calls`; the receipt, or the outcome when it was not accepted.

    A 2xx whose body cannot be read is `Sent`: the file was taken, and uploading it again
    would count the calls twice.
    """
    base = _base(endpoint, target)
    if isinstance(base, Hopeless):
        return base
    detail = f"metrika counter {target.counter_id} upload"
    form = aiohttp.FormData()
    form.add_field("file", csv_text.encode(), filename="calls.csv", content_type="text/csv")
    query = {"client_id_type": "CLIENT_ID", "comment": comment}
    answer = await request(
        session,
        "POST",
        f"{base}/upload_calls",
        detail=detail,
        timeout_s=timeout_s,
        params=query,
        data=form,
        headers=_headers(target),
    )
    if isinstance(answer, RetryLater | Hopeless):
        return answer
    status, body = answer
    if not 200 <= status < 300:
        return _failure(status, detail, body)
    receipt = _receipt(body)
    if receipt is None:
        return Sent(f"{detail}: HTTP {status}, unreadable receipt")
    log.info("metrika counter %s: upload %s is %s", target.counter_id, receipt.id, receipt.status)
    return receipt


async def upload_status(
    session: aiohttp.ClientSession,
    endpoint: str,
    target: MetrikaTarget,
    upload_id: str,
    *,
    timeout_s: float = 30,
) -> str:
    """The upload's processing status (e.g. `UPLOADED`, `PROCESSED`, `LINKAGE_FAILURE`).

    Raises `MetrikaError` (its `outcome` a `RetryLater` or `Hopeless`) when Metrika cannot say.
    """
    base = _base(endpoint, target)
    if isinstance(base, Hopeless):
        raise MetrikaError(base)
    if not _COUNTER_RE.fullmatch(upload_id):
        raise MetrikaError(Hopeless(f"metrika: upload id {upload_id!r} is not a number"))
    detail = f"metrika counter {target.counter_id} upload {upload_id} status"
    answer = await request(
        session,
        "GET",
        f"{base}/calls_uploading/{upload_id}",
        detail=detail,
        timeout_s=timeout_s,
        headers=_headers(target),
    )
    if isinstance(answer, RetryLater | Hopeless):
        raise MetrikaError(answer)
    status, body = answer
    if not 200 <= status < 300:
        failure = _failure(status, detail, body)
        if isinstance(failure, RetryLater | Hopeless):
            raise MetrikaError(failure)
        raise MetrikaError(RetryLater(f"{detail}: HTTP {status}"))  # pragma: no cover
    receipt = _receipt(body)
    if receipt is None:
        raise MetrikaError(RetryLater(f"{detail}: unreadable answer"))
    return receipt.status


async def enable_extended_threshold(
    session: aiohttp.ClientSession,
    endpoint: str,
    target: MetrikaTarget,
    *,
    timeout_s: float = 30,
) -> Outcome:
    """Switch on the counter's 21-day join window for calls (applies to later sessions)."""
    base = _base(endpoint, target)
    if isinstance(base, Hopeless):
        return base
    detail = f"metrika counter {target.counter_id} extended threshold"
    answer = await request(
        session,
        "POST",
        f"{base}/calls_extended_threshold",
        detail=detail,
        timeout_s=timeout_s,
        headers=_headers(target),
    )
    if isinstance(answer, RetryLater | Hopeless):
        return answer
    status, body = answer
    if 200 <= status < 300:
        return Sent(f"{detail}: HTTP {status}")
    return _failure(status, detail, body)


def _failure(status: int, detail: str, body: bytes) -> Outcome:
    outcome = outcome_for_status(status, detail)
    message = _error_message(body)
    if not message:
        return outcome
    match outcome:
        case RetryLater(reason):
            return RetryLater(f"{reason}: {message}")
        case Hopeless(reason):
            return Hopeless(f"{reason}: {message}")
    return outcome


def _error_message(body: bytes) -> str:
    """Metrika's `{"errors": [...], "message": ...}`, shortened; empty when there is none."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    message = data.get("message")
    return str(message)[:200] if message else ""


def _receipt(body: bytes) -> UploadResult | None:
    try:
        data: Any = json.loads(body)
    except ValueError:
        return None
    uploading = data.get("uploading") if isinstance(data, dict) else None
    if not isinstance(uploading, dict) or "id" not in uploading:
        return None
    quantity = uploading.get("line_quantity")
    return UploadResult(
        id=str(uploading["id"]),
        status=str(uploading.get("status", "")),
        line_quantity=quantity if isinstance(quantity, int) else None,
    )

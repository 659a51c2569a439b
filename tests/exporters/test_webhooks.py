"""Webhooks: signature, receiver-side verification, subscriptions, delivery outcomes."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from calltracking.core.events import Event
from calltracking.core.settings import WebhookTarget
from calltracking.exporters.outcome import Hopeless, RetryLater, Sent
from calltracking.exporters.targets import webhook_session
from calltracking.exporters.webhooks import deliver, matches, sign, verify
from tests.exporters import NOW

SECRET = "whsec-0123456789"
BODY = b'{"event":"call.ended","id":"ev-1"}'
TS = int(NOW.timestamp())


def event(key: str = "call.ended", data: dict[str, Any] | None = None) -> Event:
    return Event(
        key=key,
        id="ev-42",
        occurred_at=NOW,
        data=data if data is not None else {"id": "call-1", "caller": "+79161234567"},
    )


# --- signature -------------------------------------------------------------------------------


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{TS}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, TS, BODY) == f"sha256={expected}"


@pytest.mark.parametrize(
    ("timestamp", "signature", "body", "now", "ok"),
    [
        (str(TS), sign(SECRET, TS, BODY), BODY, NOW, True),
        (str(TS), sign(SECRET, TS, BODY), BODY, NOW + timedelta(seconds=300), True),
        (str(TS), sign(SECRET, TS, BODY), BODY, NOW - timedelta(seconds=300), True),
        # stale: a captured request replayed later is refused
        (str(TS), sign(SECRET, TS, BODY), BODY, NOW + timedelta(seconds=301), False),
        (str(TS), sign(SECRET, TS, BODY), BODY, NOW - timedelta(seconds=301), False),
        # tampered body, or a timestamp moved without re-signing
        (str(TS), sign(SECRET, TS, BODY), BODY.replace(b"ended", b"start"), NOW, False),
        (str(TS + 1), sign(SECRET, TS, BODY), BODY, NOW, False),
        (str(TS), sign("other-secret", TS, BODY), BODY, NOW, False),
        # malformed headers
        (None, sign(SECRET, TS, BODY), BODY, NOW, False),
        (str(TS), None, BODY, NOW, False),
        ("", sign(SECRET, TS, BODY), BODY, NOW, False),
        ("-1", sign(SECRET, TS, BODY), BODY, NOW, False),
        ("1e9", sign(SECRET, TS, BODY), BODY, NOW, False),
        ("١٧٦٤٠٧٢٠٠٠", sign(SECRET, TS, BODY), BODY, NOW, False),
        (str(TS), sign(SECRET, TS, BODY).replace("sha256=", "sha1="), BODY, NOW, False),
        (str(TS), sign(SECRET, TS, BODY)[:-1], BODY, NOW, False),
        (str(TS), "sha256=ж", BODY, NOW, False),
    ],
)
def test_verify(
    timestamp: str | None, signature: str | None, body: bytes, now: datetime, ok: bool
) -> None:
    assert verify(SECRET, timestamp, signature, body, now) is ok


@pytest.mark.parametrize(
    ("events", "key", "wanted"),
    [
        (("call.ended",), "call.ended", True),
        (("call.ended",), "call.started", False),
        (("call.*",), "call.recorded", True),
        (("call.*",), "lease.assigned", False),
        (("*",), "pool.exhausted", True),
        (("lease.released", "call.*"), "lease.released", True),
        (("Call.*",), "call.ended", False),
        (("call.",), "call.ended", False),
    ],
)
def test_matches(events: tuple[str, ...], key: str, wanted: bool) -> None:
    target = WebhookTarget(url="https://hooks.example/x", events=events, secret=SECRET)
    assert matches(target, key) is wanted


# --- delivery to a local receiver that checks the signature ----------------------------------


@dataclass
class Receiver:
    """What a customer's endpoint does: verify, deduplicate on the delivery id, answer."""

    secret: str = SECRET
    status: int = 204
    slow: bool = False
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)
    refused: int = 0
    headers: list[dict[str, str]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        if self.slow:
            await self.release.wait()
        body = await request.read()
        self.headers.append(dict(request.headers))
        ok = verify(
            self.secret,
            request.headers.get("X-Calltracking-Timestamp"),
            request.headers.get("X-Calltracking-Signature"),
            body,
            datetime.now(UTC),
        )
        if not ok:
            self.refused += 1
            return web.Response(status=401)
        self.accepted.setdefault(request.headers["X-Calltracking-Delivery"], json.loads(body))
        return web.Response(status=self.status)


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
async def url(receiver: Receiver) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/hook"))
    finally:
        receiver.release.set()
        await server.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # The receivers here listen on 127.0.0.1, which only an operator's allowance lets through.
    async with webhook_session(allow_private=True) as session:
        yield session


def target_for(url: str, secret: str = SECRET) -> WebhookTarget:
    return WebhookTarget(url=url, events=("call.*",), secret=secret)


async def test_receiver_verifies_the_delivery(
    receiver: Receiver, url: str, http: aiohttp.ClientSession
) -> None:
    outcome = await deliver(http, target_for(url), event(), datetime.now(UTC))
    assert isinstance(outcome, Sent)
    assert receiver.accepted == {"ev-42": event().to_json()}
    [headers] = receiver.headers
    assert headers["X-Calltracking-Event"] == "call.ended"
    assert headers["X-Calltracking-Delivery"] == "ev-42"
    assert headers["Content-Type"] == "application/json"


async def test_a_retry_carries_the_same_delivery_id(
    receiver: Receiver, url: str, http: aiohttp.ClientSession
) -> None:
    for _ in range(2):
        assert isinstance(await deliver(http, target_for(url), event(), datetime.now(UTC)), Sent)
    assert [h["X-Calltracking-Delivery"] for h in receiver.headers] == ["ev-42", "ev-42"]
    assert len(receiver.accepted) == 1


async def test_a_stale_delivery_is_refused_by_the_receiver(
    receiver: Receiver, url: str, http: aiohttp.ClientSession
) -> None:
    stale = datetime.now(UTC) - timedelta(minutes=10)
    outcome = await deliver(http, target_for(url), event(), stale)
    assert isinstance(outcome, Hopeless)
    assert receiver.refused == 1
    assert receiver.accepted == {}


async def test_a_wrong_secret_is_refused_by_the_receiver(
    receiver: Receiver, url: str, http: aiohttp.ClientSession
) -> None:
    outcome = await deliver(http, target_for(url, "not-the-secret"), event(), datetime.now(UTC))
    assert isinstance(outcome, Hopeless)
    assert "401" in outcome.reason
    assert receiver.refused == 1


@pytest.mark.parametrize(
    ("status", "kind"), [(503, RetryLater), (429, RetryLater), (410, Hopeless)]
)
async def test_receiver_answers_map_to_outcomes(
    receiver: Receiver, url: str, http: aiohttp.ClientSession, status: int, kind: type
) -> None:
    receiver.status = status
    assert isinstance(await deliver(http, target_for(url), event(), datetime.now(UTC)), kind)


async def test_a_slow_receiver_is_retried_later(
    receiver: Receiver, url: str, http: aiohttp.ClientSession
) -> None:
    receiver.slow = True
    outcome = await deliver(http, target_for(url), event(), datetime.now(UTC), timeout_s=0.2)
    assert isinstance(outcome, RetryLater)


async def test_an_event_that_is_not_json_is_hopeless(
    receiver: Receiver, url: str, http: aiohttp.ClientSession
) -> None:
    outcome = await deliver(http, target_for(url), event(data={"x": object()}), NOW)
    assert isinstance(outcome, Hopeless)
    assert receiver.headers == []

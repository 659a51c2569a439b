"""GA4: the payload builder and validator (tables, hypothesis) and the sender against a fake."""

from __future__ import annotations

import dataclasses
import logging
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from calltracking.core.kinds import AttributionKind, CallStatus
from calltracking.core.records import CallRecord
from calltracking.core.settings import Ga4Target
from calltracking.exporters.ga4 import (
    build_ga4_payload,
    debug_ga4,
    encode_payload,
    send_ga4,
    to_micros,
    validate_ga4_payload,
)
from calltracking.exporters.outcome import Hopeless, RetryLater, Sent, Skipped, backoff_delay
from tests.exporters import NOW, calls, make_call
from tests.exporters.fake_ga4 import FakeGa4, ga4_problems, running

TARGET = Ga4Target(measurement_id="G-TEST1234", api_secret="s3cret-api")


def payload_of(call: CallRecord, now: datetime = NOW) -> dict[str, Any]:
    payload = build_ga4_payload(call, now)
    assert isinstance(payload, dict), payload
    return payload


# --- builder ---------------------------------------------------------------------------------


def test_payload_of_a_tracked_call() -> None:
    call = make_call()
    payload = payload_of(call)
    assert payload["client_id"] == "1234567890.1700000000"
    assert payload["timestamp_micros"] == int(call.started_at.timestamp()) * 1_000_000
    [event] = payload["events"]
    assert event["name"] == "phone_call"
    assert event["params"] == {
        "session_id": call.session.ga_session_id if call.session else None,
        "source": "google",
        "medium": "cpc",
        "campaign": "winter-sale",
        "call_status": "answered",
        "duration_s": 95,
        "talk_s": 83,
        "attribution_kind": "dynamic",
        "engagement_time_msec": 1,
    }
    assert validate_ga4_payload(payload, NOW) == []


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"spam": True}, "spam"),
        ({"kind": AttributionKind.INITIAL}, "untracked"),
        ({"kind": AttributionKind.UNTRACKED}, "untracked"),
        ({"kind": AttributionKind.STATIC}, "untracked"),
        ({"kind": AttributionKind.UNATTRIBUTED}, "untracked"),
        ({"kind": AttributionKind.UNKNOWN}, "untracked"),
        ({"session": None}, "session"),
    ],
)
def test_skipped_calls(overrides: dict[str, Any], reason: str) -> None:
    outcome = build_ga4_payload(make_call(**overrides), NOW)
    assert isinstance(outcome, Skipped)
    assert reason in outcome.reason


@pytest.mark.parametrize("client_id", [None, "", "abc", "123", "1.2.3", "12 34.5", "-1.5"])
def test_no_usable_client_id_is_skipped(client_id: str | None) -> None:
    call = make_call()
    assert call.session is not None
    session = dataclasses.replace(call.session, ga_client_id=client_id)
    outcome = build_ga4_payload(dataclasses.replace(call, session=session), NOW)
    assert outcome == Skipped("no GA client id")


@pytest.mark.parametrize("raw", ["GA1.1.1234567890.1700000000", " 1234567890.1700000000 "])
def test_client_id_taken_from_a_whole_ga_cookie(raw: str) -> None:
    call = make_call()
    assert call.session is not None
    session = dataclasses.replace(call.session, ga_client_id=raw)
    payload = payload_of(dataclasses.replace(call, session=session))
    assert payload["client_id"] == "1234567890.1700000000"


@pytest.mark.parametrize(
    ("age", "sent"),
    [
        (timedelta(hours=71, minutes=59), True),
        (timedelta(hours=72), True),
        (timedelta(hours=72, microseconds=1), False),
        (timedelta(hours=73), False),
        (timedelta(days=30), False),
    ],
)
def test_72_hour_window_on_both_sides(age: timedelta, sent: bool) -> None:
    outcome = build_ga4_payload(make_call(started_at=NOW - age), NOW)
    if sent:
        assert isinstance(outcome, dict)
        assert validate_ga4_payload(outcome, NOW) == []
        assert ga4_problems(encode_payload(outcome), NOW) == []
    else:
        assert outcome == Skipped("older than 72 hours")


def test_fake_refuses_what_is_past_72_hours_too() -> None:
    payload = payload_of(make_call(started_at=NOW - timedelta(hours=72)))
    later = NOW + timedelta(seconds=1)
    assert validate_ga4_payload(payload, later) != []
    assert [m["validationCode"] for m in ga4_problems(encode_payload(payload), later)] == [
        "VALUE_OUT_OF_BOUNDS"
    ]


def test_a_call_starting_after_now_is_stamped_now() -> None:
    payload = payload_of(make_call(started_at=NOW + timedelta(seconds=3)))
    assert payload["timestamp_micros"] == to_micros(NOW)
    assert validate_ga4_payload(payload, NOW) == []


@pytest.mark.parametrize(
    ("since_session_start", "joined"),
    [
        (timedelta(minutes=1), True),
        (timedelta(hours=24), True),
        (timedelta(hours=24, seconds=1), False),
        (timedelta(hours=30), False),
        (-timedelta(hours=1), False),  # a session "starting" after the call is not its session
    ],
)
def test_session_id_only_within_24_hours(since_session_start: timedelta, joined: bool) -> None:
    call = make_call()
    assert call.session is not None
    start = call.started_at - since_session_start
    session = dataclasses.replace(
        call.session, started_at=start, ga_session_id=str(int(start.timestamp()))
    )
    params = payload_of(dataclasses.replace(call, session=session))["events"][0]["params"]
    assert ("session_id" in params) is joined
    assert params["source"] == "google"  # later calls still count for the client


@pytest.mark.parametrize(
    ("session_id", "started_at", "joined"),
    [
        # GA4's session id is the session's start in Unix seconds; the call is at 11:50.
        (str(int(datetime(2026, 11, 25, 11, 40, tzinfo=UTC).timestamp())), None, True),
        (str(int(datetime(2026, 11, 23, 11, 40, tzinfo=UTC).timestamp())), None, False),
        ("not-a-number", NOW, False),
        (None, NOW, False),
    ],
)
def test_session_id_read_as_start_when_the_start_is_unknown(
    session_id: str | None, started_at: datetime | None, joined: bool
) -> None:
    call = make_call(started_at=datetime(2026, 11, 25, 11, 50, tzinfo=UTC))
    assert call.session is not None
    session = dataclasses.replace(call.session, ga_session_id=session_id, started_at=started_at)
    params = payload_of(dataclasses.replace(call, session=session))["events"][0]["params"]
    assert ("session_id" in params) is joined


def test_long_texts_are_truncated_to_valid_values() -> None:
    call = make_call()
    assert call.session is not None
    session = dataclasses.replace(call.session, source="s" * 500, campaign="ж" * 101)
    payload = payload_of(dataclasses.replace(call, session=session))
    params = payload["events"][0]["params"]
    assert params["source"] == "s" * 100
    assert params["campaign"] == "ж" * 100
    assert validate_ga4_payload(payload, NOW) == []


@given(call=calls(), offset=st.integers(-3600, 80 * 3600))
def test_every_built_payload_validates(call: CallRecord, offset: int) -> None:
    now = call.started_at + timedelta(seconds=offset)
    outcome = build_ga4_payload(call, now)
    if isinstance(outcome, Skipped):
        return
    assert call.kind.tracked
    assert not call.spam
    assert validate_ga4_payload(outcome, now) == []
    assert ga4_problems(encode_payload(outcome), now) == []  # the fake's independent opinion


# --- validator -------------------------------------------------------------------------------


def _with_event(**event: Any) -> dict[str, Any]:
    payload = payload_of(make_call())
    payload["events"] = [{**payload["events"][0], **event}]
    return payload


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({**payload_of(make_call()), "client_id": ""}, "client_id"),
        ({k: v for k, v in payload_of(make_call()).items() if k != "client_id"}, "client_id"),
        ({**payload_of(make_call()), "client_id": "GA1.1.1.2"}, "client_id"),
        ({**payload_of(make_call()), "events": []}, "events"),
        ({**payload_of(make_call()), "events": [{"name": "phone_call"}] * 26}, "more than 25"),
        (_with_event(name="page_view"), "reserved"),
        (_with_event(name="session_start"), "reserved"),
        (_with_event(name="ga_call"), "reserved"),
        (_with_event(name="9lives"), "letter"),
        (_with_event(name="phone call"), "letter"),
        (_with_event(name="p" * 41), "longer than 40"),
        (_with_event(params={"x" * 41: 1}), "longer than 40"),
        (_with_event(params={"_private": 1}), "letter"),
        (_with_event(params={"google_x": 1}), "reserved"),
        (_with_event(params={"firebase_conversion": 1}), "reserved"),
        (_with_event(params={"source": "s" * 101}), "longer than 100"),
        (_with_event(params={"nested": {"a": 1}}), "string or a number"),
        (_with_event(params={f"p{i}": i for i in range(26)}), "more than 25"),
        (_with_event(params={"big": 1, "blob": "x" * 100} | {"k": "y"}), None),
        ({**payload_of(make_call()), "timestamp_micros": to_micros(NOW) + 1}, "future"),
        (
            {**payload_of(make_call()), "timestamp_micros": to_micros(NOW - timedelta(hours=73))},
            "72 hours",
        ),
        ({**payload_of(make_call()), "timestamp_micros": "soon"}, "microseconds"),
        ({**payload_of(make_call()), "user_properties": {"x": "y" * 131_000}}, "130000"),
    ],
)
def test_validator_finds_what_ga4_refuses(payload: dict[str, Any], fragment: str | None) -> None:
    problems = validate_ga4_payload(payload, NOW)
    if fragment is None:
        assert problems == []
    else:
        assert any(fragment in p for p in problems), problems


# --- sender against the fake -----------------------------------------------------------------


@pytest.fixture
def fake() -> FakeGa4:
    return FakeGa4(api_secret=TARGET.api_secret, clock=lambda: NOW)


@pytest.fixture
async def endpoint(fake: FakeGa4) -> AsyncIterator[str]:
    async with running(fake) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_sent_and_received_as_built(
    fake: FakeGa4, endpoint: str, http: aiohttp.ClientSession
) -> None:
    payload = payload_of(make_call())
    outcome = await send_ga4(http, endpoint, TARGET, payload)
    assert isinstance(outcome, Sent)
    assert fake.received == [payload]


@pytest.mark.parametrize(
    "bad",
    [
        {"client_id": "GA1.1.not-a-client"},
        {"events": [{"name": "phone_call", "params": {"source": "s" * 101}}]},
        {"events": [{"name": "page_view", "params": {}}]},
        {"timestamp_micros": to_micros(NOW - timedelta(hours=73))},
    ],
)
async def test_the_fake_is_strict(
    fake: FakeGa4, endpoint: str, http: aiohttp.ClientSession, bad: dict[str, Any]
) -> None:
    body = encode_payload({**payload_of(make_call()), **bad})
    query = {"measurement_id": TARGET.measurement_id, "api_secret": TARGET.api_secret}
    async with http.post(f"{endpoint}/mp/collect", params=query, data=body) as response:
        assert response.status == 400
    async with http.post(f"{endpoint}/debug/mp/collect", data=body) as response:
        assert (await response.json())["validationMessages"] != []
    assert fake.received == []


async def test_invalid_payload_is_hopeless_and_never_sent(
    fake: FakeGa4, endpoint: str, http: aiohttp.ClientSession
) -> None:
    payload = {**payload_of(make_call()), "client_id": "bogus"}
    outcome = await send_ga4(http, endpoint, TARGET, payload)
    assert isinstance(outcome, Hopeless)
    assert "client_id" in outcome.reason
    assert fake.hits == 0


async def test_debug_endpoint_agrees_with_our_validator(
    endpoint: str, http: aiohttp.ClientSession
) -> None:
    good = payload_of(make_call())
    assert await debug_ga4(http, endpoint, TARGET, good) == []
    bad = _with_event(params={"source": "s" * 101, "ga_x": 1})
    messages = await debug_ga4(http, endpoint, TARGET, bad)
    assert {m["validationCode"] for m in messages} == {"VALUE_OUT_OF_BOUNDS", "NAME_RESERVED"}
    assert len(validate_ga4_payload(bad, NOW)) == 2


async def test_500_is_retried_later_with_back_off(
    fake: FakeGa4, endpoint: str, http: aiohttp.ClientSession
) -> None:
    payload = payload_of(make_call())
    fake.mode = "error500"
    first = await send_ga4(http, endpoint, TARGET, payload)
    assert isinstance(first, RetryLater)
    assert "500" in first.reason
    assert backoff_delay(1, jitter=0.0) > 0
    fake.mode = "ok"
    assert isinstance(await send_ga4(http, endpoint, TARGET, payload), Sent)
    assert fake.hits == 2
    assert fake.received == [payload]


async def test_timeout_is_retried_later(
    fake: FakeGa4, endpoint: str, http: aiohttp.ClientSession
) -> None:
    fake.mode = "slow"
    outcome = await send_ga4(http, endpoint, TARGET, payload_of(make_call()), timeout_s=0.2)
    assert isinstance(outcome, RetryLater)
    assert "0.2" in outcome.reason


async def test_wrong_secret_is_hopeless(endpoint: str, http: aiohttp.ClientSession) -> None:
    wrong = Ga4Target(measurement_id=TARGET.measurement_id, api_secret="wrong-secret")
    outcome = await send_ga4(http, endpoint, wrong, payload_of(make_call()))
    assert isinstance(outcome, Hopeless)
    assert "403" in outcome.reason
    assert "wrong-secret" not in outcome.reason


async def test_unreachable_endpoint_is_retried_later_and_the_secret_stays_out_of_logs(
    http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    caplog.set_level(logging.DEBUG)
    outcome = await send_ga4(http, f"http://127.0.0.1:{port}", TARGET, payload_of(make_call()))
    assert isinstance(outcome, RetryLater)
    assert TARGET.api_secret not in outcome.reason
    assert TARGET.api_secret not in caplog.text


@pytest.mark.parametrize("status", [CallStatus.MISSED, CallStatus.BUSY, CallStatus.FAILED])
async def test_unanswered_calls_are_sent_with_their_status(
    fake: FakeGa4, endpoint: str, http: aiohttp.ClientSession, status: CallStatus
) -> None:
    call = make_call(status=status, answered_at=None)
    outcome = await send_ga4(http, endpoint, TARGET, payload_of(call))
    assert isinstance(outcome, Sent)
    params = fake.received[0]["events"][0]["params"]
    assert (params["call_status"], params["talk_s"]) == (str(status), 0)

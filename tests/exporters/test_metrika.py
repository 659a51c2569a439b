"""Metrika: the calls CSV (tables, hypothesis) and the upload API against a strict fake."""

from __future__ import annotations

import csv
import dataclasses
import io
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from calltracking.core.kinds import AttributionKind, CallStatus
from calltracking.core.records import CallRecord
from calltracking.core.settings import MetrikaTarget
from calltracking.exporters.metrika import (
    CSV_COLUMNS,
    MetrikaError,
    UploadResult,
    build_calls_csv,
    enable_extended_threshold,
    upload_calls,
    upload_status,
)
from calltracking.exporters.outcome import Hopeless, RetryLater, Sent, Skipped
from tests.exporters import NOW, calls, make_call
from tests.exporters.fake_metrika import FakeMetrika, Refused, check_calls_csv, running

TARGET = MetrikaTarget(counter_id="12345678", token="y0_oauth-token")
HEADER = (
    "ClientId,DateTime,PhoneNumber,TalkDuration,HoldDuration,CallMissed,FirstTimeCaller,URL,Tag"
)


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def with_session(call: CallRecord, **changes: Any) -> CallRecord:
    assert call.session is not None
    return dataclasses.replace(call, session=dataclasses.replace(call.session, **changes))


# --- builder ---------------------------------------------------------------------------------


def test_csv_of_an_answered_and_a_missed_call() -> None:
    answered = make_call()
    missed = make_call(
        id="call-2",
        status=CallStatus.MISSED,
        answered_at=None,
        caller=None,
        first_time_caller=False,
        kind=AttributionKind.COOLED,
    )
    text, included, skipped = build_calls_csv([answered, missed], NOW)
    assert text.splitlines()[0] == HEADER
    assert included == ["call-1", "call-2"]
    assert skipped == []
    first, second = rows_of(text)
    assert first == {
        "ClientId": "1700000000123456789",
        "DateTime": str(int(answered.started_at.timestamp())),
        "PhoneNumber": "+79161234567",
        "TalkDuration": "83",
        "HoldDuration": "12",
        "CallMissed": "0",
        "FirstTimeCaller": "1",
        "URL": "https://shop.example/landing?utm_source=google",
        "Tag": "dynamic",
    }
    assert (second["PhoneNumber"], second["CallMissed"], second["FirstTimeCaller"]) == (
        "",
        "1",
        "0",
    )
    assert (second["TalkDuration"], second["HoldDuration"], second["Tag"]) == ("0", "95", "cooled")
    assert check_calls_csv(text, NOW) == [first, second]


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (make_call(spam=True), "spam"),
        (make_call(kind=AttributionKind.INITIAL), "untracked"),
        (make_call(kind=AttributionKind.STATIC), "untracked"),
        (make_call(kind=AttributionKind.UNATTRIBUTED), "untracked"),
        (make_call(session=None), "no Metrika client id"),
        (with_session(make_call(), ym_client_id=None), "no Metrika client id"),
        (with_session(make_call(), ym_client_id="abc"), "no Metrika client id"),
        (with_session(make_call(), ym_client_id="17.5"), "no Metrika client id"),
        (make_call(started_at=NOW - timedelta(days=22)), "older than 21 days"),
    ],
)
def test_skipped_calls_come_back_with_the_reason(call: CallRecord, reason: str) -> None:
    text, included, skipped = build_calls_csv([call], NOW)
    assert text == HEADER + "\n"
    assert included == []
    [(call_id, outcome)] = skipped
    assert call_id == call.id
    assert isinstance(outcome, Skipped)
    assert reason in outcome.reason


@pytest.mark.parametrize(
    ("age", "included"),
    [
        (timedelta(days=20, hours=23), True),
        (timedelta(days=21), True),
        (timedelta(days=21, seconds=1), False),
        (timedelta(days=60), False),
    ],
)
def test_21_day_window_on_both_sides(age: timedelta, included: bool) -> None:
    _, ids, skipped = build_calls_csv([make_call(started_at=NOW - age)], NOW)
    assert (ids == ["call-1"]) is included
    assert (skipped == [("call-1", Skipped("older than 21 days"))]) is not included


@pytest.mark.parametrize("caller", ["anonymous", "84951110001", "+7 916 123-45-67", ""])
def test_a_caller_not_in_e164_is_left_empty(caller: str) -> None:
    text, _, _ = build_calls_csv([make_call(caller=caller)], NOW)
    assert rows_of(text)[0]["PhoneNumber"] == ""


def test_urls_with_commas_quotes_and_newlines_stay_one_field() -> None:
    url = 'https://a.example/?q=1,2&x="y"\r\nz'
    text, _, _ = build_calls_csv([with_session(make_call(), landing_url=url)], NOW)
    [row] = check_calls_csv(text, NOW)
    assert row["URL"] == 'https://a.example/?q=1,2&x="y"z'


def test_a_start_after_now_is_stamped_now() -> None:
    text, _, _ = build_calls_csv([make_call(started_at=NOW + timedelta(seconds=5))], NOW)
    assert rows_of(text)[0]["DateTime"] == str(int(NOW.timestamp()))


@given(batch=st.lists(calls(), max_size=8), offset=st.integers(-3600, 25 * 86400))
def test_every_built_csv_is_accepted_and_accounts_for_each_call(
    batch: list[CallRecord], offset: int
) -> None:
    now = NOW + timedelta(seconds=offset)
    text, included, skipped = build_calls_csv(batch, now)
    assert tuple(text.splitlines()[0].split(",")) == CSV_COLUMNS
    rows = check_calls_csv(text, now)  # the fake's independent rules
    assert len(rows) == len(included)
    assert sorted(included + [i for i, _ in skipped]) == sorted(c.id for c in batch)
    by_id = {c.id: c for c in batch}
    for call_id in included:
        call = by_id[call_id]
        assert call.kind.tracked
        assert not call.spam
        assert now - call.started_at <= timedelta(days=21)


# --- the API against the fake ----------------------------------------------------------------


@pytest.fixture
def fake() -> FakeMetrika:
    return FakeMetrika(counter_id=TARGET.counter_id, token=TARGET.token, clock=lambda: NOW)


@pytest.fixture
async def endpoint(fake: FakeMetrika) -> AsyncIterator[str]:
    async with running(fake) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_upload_then_status(
    fake: FakeMetrika, endpoint: str, http: aiohttp.ClientSession
) -> None:
    text, _, _ = build_calls_csv([make_call(), make_call(id="call-2")], NOW)
    result = await upload_calls(http, endpoint, TARGET, text)
    assert result == UploadResult(id="1", status="UPLOADED", line_quantity=2)
    [upload] = fake.uploads
    assert upload["rows"] == rows_of(text)
    assert upload["comment"] == "calltracking"
    assert await upload_status(http, endpoint, TARGET, "1") == "PROCESSED"


async def test_extended_threshold(
    fake: FakeMetrika, endpoint: str, http: aiohttp.ClientSession
) -> None:
    outcome = await enable_extended_threshold(http, endpoint, TARGET)
    assert isinstance(outcome, Sent)
    assert fake.extended_threshold


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("ClientID,Date\n1,2\n", "bad header"),
        ("ClientId,DateTime\n1,2\n", "header lacks"),
        (HEADER.replace("ClientId", "ClientId,UserId") + "\n", "exactly one"),
        (HEADER + "\nGA1.1.123.456,1764000000,,0,0,0,0,,dynamic\n", "ClientId"),
        (HEADER + "\n17,2026-11-25 12:00,,0,0,0,0,,dynamic\n", "DateTime"),
        (HEADER + "\n17,1764000000,8 916 123,0,0,0,0,,dynamic\n", "PhoneNumber"),
        (HEADER + "\n17,1764000000,,0,0,yes,0,,dynamic\n", "CallMissed"),
        (HEADER + "\n17,1764000000,,0,0,0\n", "fields"),
        (HEADER + f"\n17,{int(NOW.timestamp()) + 60},,0,0,0,0,,dynamic\n", "DateTime"),
    ],
)
async def test_the_fake_is_strict_and_a_refusal_is_hopeless(
    fake: FakeMetrika, endpoint: str, http: aiohttp.ClientSession, text: str, refusal: str
) -> None:
    outcome = await upload_calls(http, endpoint, TARGET, text)
    assert isinstance(outcome, Hopeless)
    assert "400" in outcome.reason
    assert refusal in fake.refusals[0]
    assert fake.uploads == []
    with pytest.raises(Refused):
        check_calls_csv(text, NOW)


@pytest.mark.parametrize(
    ("mode", "status"), [("quota429", 429), ("quota420", 420), ("error500", 500)]
)
async def test_quota_and_server_errors_are_retried_later(
    fake: FakeMetrika, endpoint: str, http: aiohttp.ClientSession, mode: str, status: int
) -> None:
    fake.mode = mode
    text, _, _ = build_calls_csv([make_call()], NOW)
    outcome = await upload_calls(http, endpoint, TARGET, text)
    assert isinstance(outcome, RetryLater)
    assert str(status) in outcome.reason
    assert isinstance(await enable_extended_threshold(http, endpoint, TARGET), RetryLater)
    with pytest.raises(MetrikaError) as caught:
        await upload_status(http, endpoint, TARGET, "1")
    assert isinstance(caught.value.outcome, RetryLater)
    fake.mode = "ok"
    assert isinstance(await upload_calls(http, endpoint, TARGET, text), UploadResult)


@pytest.mark.parametrize(
    ("target", "status"),
    [
        (dataclasses.replace(TARGET, token="revoked-token"), "401"),
        (dataclasses.replace(TARGET, counter_id="87654321"), "403"),
    ],
)
async def test_auth_failures_are_hopeless_without_leaking_the_token(
    endpoint: str, http: aiohttp.ClientSession, target: MetrikaTarget, status: str
) -> None:
    text, _, _ = build_calls_csv([make_call()], NOW)
    outcome = await upload_calls(http, endpoint, target, text)
    assert isinstance(outcome, Hopeless)
    assert status in outcome.reason
    assert target.token not in outcome.reason
    assert isinstance(await enable_extended_threshold(http, endpoint, target), Hopeless)


async def test_a_counter_id_that_is_no_number_is_hopeless_without_a_request(
    fake: FakeMetrika, endpoint: str, http: aiohttp.ClientSession
) -> None:
    target = dataclasses.replace(TARGET, counter_id="../../other")
    assert isinstance(await upload_calls(http, endpoint, target, HEADER), Hopeless)
    with pytest.raises(MetrikaError):
        await upload_status(http, endpoint, target, "1")
    assert fake.hits == 0


async def test_unknown_upload_is_hopeless(endpoint: str, http: aiohttp.ClientSession) -> None:
    with pytest.raises(MetrikaError) as caught:
        await upload_status(http, endpoint, TARGET, "999")
    assert isinstance(caught.value.outcome, Hopeless)


async def test_unreachable_metrika_is_retried_later(http: aiohttp.ClientSession) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    text, _, _ = build_calls_csv([make_call()], NOW)
    outcome = await upload_calls(http, f"http://127.0.0.1:{port}", TARGET, text)
    assert isinstance(outcome, RetryLater)
    assert TARGET.token not in outcome.reason

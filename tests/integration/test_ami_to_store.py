"""Every recorded Asterisk transcript, replayed over TCP to the real AMI listener, is stored by the
real store as the contract says: one row per call, field by field, and its outbox events once.

Each capture's DID is rewritten to a number of the test's site: the number a visitor was leased
through `DeciderService.hello` before the call, one of the three defaults, a pool number never
leased, or left as a number no site has.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from calltracking.core.kinds import AttributionKind, CallStatus
from calltracking.core.records import CallKey
from calltracking.store.calls import SqlCallRecorder, record_from_row
from calltracking.store.db import Database
from tests.ami.test_listener import Session
from tests.ami.transcripts import load
from tests.integration.pbx import (
    BOTH_DATABASES,
    CAPTURED_CALLER,
    MONITOR,
    OPERATOR,
    PBX,
    Scene,
    StepClock,
    ami,
    ami_transcript,
    call_events,
    epoch_of,
    linkedid_of,
    listener,
    place_recording,
    replayed,
    seed_scene,
    stored,
)

pytestmark = BOTH_DATABASES

NEVER_LEASED = "+74951110003"  # a reserve number moved into the pool after the visitor's lease
UNKNOWN_DID = "+74959999999"
ROUTE = "sales@operators"


@pytest.fixture
def recordings(tmp_path: Path) -> Path:
    return tmp_path / "recordings"


# transcript: (where its DID goes, the kind, caller, status, hangup cause, recording file)
CASES: dict[str, tuple[str, AttributionKind, str | None, CallStatus, int, str | None]] = {
    "answered_call": (
        "leased",
        AttributionKind.DYNAMIC,
        CAPTURED_CALLER,
        CallStatus.ANSWERED,
        16,
        "1795592516.1.wav",
    ),
    "no_answer": (
        "initial",
        AttributionKind.INITIAL,
        "+79031112233",
        CallStatus.MISSED,
        16,
        "1795592531.15.wav",
    ),
    "busy": (
        "expired",
        AttributionKind.EXPIRED,
        "+79265554433",
        CallStatus.BUSY,
        16,
        "1795592545.23.wav",
    ),
    "agi_down": (
        "untracked",
        AttributionKind.UNTRACKED,
        "+79261112233",
        CallStatus.ANSWERED,
        16,
        "1795592551.31.wav",
    ),
    "anonymous_caller": (
        "leased",
        AttributionKind.DYNAMIC,
        None,
        CallStatus.ANSWERED,
        16,
        "1795592565.52.wav",
    ),
    "no_callerid": (
        "leased",
        AttributionKind.DYNAMIC,
        None,
        CallStatus.ANSWERED,
        16,
        "1795592571.59.wav",
    ),
    "unknown_did": (
        "unknown",
        AttributionKind.UNKNOWN,
        CAPTURED_CALLER,
        CallStatus.ANSWERED,
        16,
        "1795592578.66.wav",
    ),
    "caller_hangs_up_during_agi": (
        "pool",
        AttributionKind.UNATTRIBUTED,
        CAPTURED_CALLER,
        CallStatus.MISSED,
        19,
        None,
    ),
    "answered_call_timestampevents": (
        "leased",
        AttributionKind.DYNAMIC,
        CAPTURED_CALLER,
        CallStatus.ANSWERED,
        16,
        "1795592604.77.wav",
    ),
}


def captured_did(name: str) -> str:
    exten = next(m["Exten"] for m in load(name).events if m.get("Event") == "Newchannel")
    return "+" + exten


async def target_number(scene: Scene, where: str, at: datetime) -> str:
    if where == "leased":
        return scene.leased
    if where == "pool":
        await scene.add_to_pool(NEVER_LEASED, at)
        return NEVER_LEASED
    if where == "unknown":
        return UNKNOWN_DID
    return scene.default(where)


def asterisk_times(name: str) -> tuple[datetime, set[datetime], datetime]:
    """(first Newchannel, every event's moment, last Hangup) from a capture's Timestamp headers."""
    events = [m for m in load(name).events if "Timestamp" in m]
    stamps = {datetime.fromtimestamp(float(m["Timestamp"]), UTC) for m in events}
    first = next(m for m in events if m["Event"] == "Newchannel")
    last = [m for m in events if m["Event"] == "Hangup"][-1]
    at = [datetime.fromtimestamp(float(m["Timestamp"]), UTC) for m in (first, last)]
    return at[0], stamps, at[1]


def check_row(
    row: Any, scene: Scene, name: str, did: str, lease_id: str, wav_size: int | None
) -> None:
    _, kind, caller, status, cause, wav = CASES[name]
    call = record_from_row(row, None)
    site_known = kind is not AttributionKind.UNKNOWN
    assert (row.pbx_id, row.linkedid) == (PBX, linkedid_of(name))
    assert (row.did, row.caller, row.status, row.hangup_cause) == (did, caller, status, cause)
    assert (row.account_id, row.site_id) == (
        (scene.site.account_id, scene.site.id) if site_known else (None, None)
    )
    assert row.kind == kind
    assert row.confidence == (
        0.0 if kind in (AttributionKind.UNKNOWN, AttributionKind.UNATTRIBUTED) else 1.0
    )
    dynamic = kind is AttributionKind.DYNAMIC
    assert (row.lease_id, row.visitor_id, row.visit_id) == (
        (lease_id, scene.welcome.visitor_id, scene.welcome.visit_id)
        if dynamic
        else (None, None, None)
    )
    assert row.static_label is None
    # The first call of this caller to the account, so first-time; a lead only when tracked.
    assert row.first_time_caller is (caller is not None and site_known)
    assert row.lead is (caller is not None and kind.tracked)
    assert (row.spam, row.reconciled) == (False, False)
    assert (row.route, row.record) == ((ROUTE if site_known else None), True)
    # Times: the listener's own moments (or Asterisk's, with timestampevents), in order.
    answered = status is CallStatus.ANSWERED
    assert row.answered_by == (OPERATOR if answered else None)
    assert (row.answered_at is not None) is answered
    assert scene.hello_at < row.started_at < row.ended_at
    if answered:
        assert row.started_at < row.answered_at < row.ended_at
    assert 0 <= call.talk_s <= call.duration_s < 120
    assert call.duration_s == int((row.ended_at - row.started_at).total_seconds())
    if name == "answered_call_timestampevents":
        first, stamps, last = asterisk_times(name)
        assert (row.started_at, row.ended_at) == (first, last)
        assert row.answered_at in stamps
        assert (call.duration_s, call.talk_s) == (2, 2)  # answered at once, 2 s of talk
    assert row.recording_path == (f"{MONITOR}/calltracking/{wav}" if wav else None)
    assert row.recording_size == wav_size


@pytest.mark.parametrize("name", list(CASES))
async def test_each_transcript_is_stored_field_by_field_and_once(
    any_db: Database, recordings: Path, name: str
) -> None:
    where, _kind, _caller, status, _cause, wav = CASES[name]
    linkedid = linkedid_of(name)
    start = epoch_of(linkedid)  # Asterisk's clock, so timestampevents' stamps are believed
    scene = await seed_scene(any_db, start - timedelta(seconds=30), route=ROUTE)
    did = await target_number(scene, where, start - timedelta(seconds=20))
    lease_id = await scene.lease_id()
    answered = status is CallStatus.ANSWERED
    wav_size = None
    if wav is not None:  # what MixMonitor leaves: audio, or a bare header when unanswered
        size = place_recording(recordings, wav, empty=not answered)
        wav_size = size if answered else None
    stream = ami_transcript(name, {captured_did(name): did})
    clock = StepClock(start)

    async with ami([Session(stream=stream)], any_db, recordings, clock) as (_, listener):
        [row] = await stored(any_db, lambda rows: rows and rows[0].ended_at is not None)
        if wav_size is not None:
            await stored(any_db, lambda rows: rows[0].recording_size is not None)
        await replayed(listener, linkedid)  # the recording confirmed, or given up on a bare header

    [row] = await stored(any_db, bool)
    check_row(row, scene, name, did, lease_id, wav_size)
    events = await call_events(any_db)
    expected = {"call.started": 1, "call.ended": 1}
    if answered:
        expected["call.answered"] = 1
    if wav_size is not None:
        expected["call.recorded"] = 1
    assert Counter(key for key, call_id in events if call_id == row.id) == expected
    assert {call_id for _, call_id in events} == {row.id}
    assert events[0][0] == "call.started"
    assert events[-2 if wav_size else -1][0] == "call.ended"

    # The same transcript again, to a listener that never saw it (a restart replaying the call).
    before = (await stored(any_db, bool), events)
    async with ami([Session(stream=stream)], any_db, recordings, clock) as (_, listener):
        await replayed(listener, linkedid)
    assert (await stored(any_db, bool), await call_events(any_db)) == before


async def test_second_call_of_a_caller_in_the_month_is_no_lead(
    any_db: Database, recordings: Path
) -> None:
    first, second = "answered_call", "answered_call_timestampevents"
    start = epoch_of(linkedid_of(first))
    scene = await seed_scene(any_db, start - timedelta(seconds=30), route=ROUTE)
    stream = [
        *ami_transcript(first, {captured_did(first): scene.leased}),
        *ami_transcript(second, {captured_did(second): scene.leased}),
    ]
    async with ami([Session(stream=stream)], any_db, recordings, StepClock(start)):
        rows = await stored(
            any_db, lambda rows: len(rows) == 2 and all(r.ended_at is not None for r in rows)
        )
    assert [r.linkedid for r in rows] == [linkedid_of(first), linkedid_of(second)]
    assert [(r.kind, r.caller, r.visitor_id) for r in rows] == 2 * [
        ("dynamic", CAPTURED_CALLER, scene.welcome.visitor_id)
    ]
    assert [(r.first_time_caller, r.lead) for r in rows] == [(True, True), (False, False)]
    events = Counter(key for key, _ in await call_events(any_db))
    assert events == {"call.started": 2, "call.answered": 2, "call.ended": 2}


async def test_overlapping_recording_polls_confirm_once(any_db: Database, recordings: Path) -> None:
    key = CallKey(PBX, "1795592516.0")
    start = epoch_of(key.linkedid)
    recorder = SqlCallRecorder(any_db)
    path = f"{MONITOR}/calltracking/1795592516.1.wav"
    size = place_recording(recordings, "1795592516.1.wav")
    await recorder.start_call(key, UNKNOWN_DID, CAPTURED_CALLER, start)
    await recorder.name_recording(key, path)
    await recorder.end_call(key, start + timedelta(seconds=5), CallStatus.ANSWERED, 16)
    idle = listener(1, recorder, recordings, StepClock(start))  # never connected: hooks only
    idle.recordings.named(key, path, start)
    idle.recordings.call_ended(key, start + timedelta(seconds=5))
    late = start + timedelta(hours=1)
    await asyncio.gather(idle.poll_recordings(late), idle.poll_recordings(late))
    [row] = await stored(any_db, bool)
    assert row.recording_size == size
    assert [k for k, _ in await call_events(any_db)].count("call.recorded") == 1

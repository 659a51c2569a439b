"""Calls the listener did not see start, or stopped seeing for a while: found at reconnect
whatever context the dialplan moved them to, with their DID, recording, status and times.

Against the recorded Asterisk transcripts (tests/ami's small AMI server, which now answers
`Getvar`) and the simulated PBX in the shipped dialplan's shape (`route_context`).
"""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from calltracking.core.kinds import CallStatus
from calltracking.core.records import CallKey
from calltracking.pbxsim import CallSpec, Outcome, PbxSim, SimConfig
from tests.ami.expected import OPERATOR
from tests.ami.test_listener import (
    FAST,
    FakeAsterisk,
    MemoryRecorder,
    Session,
    after_login,
    ended,
    make_listener,
    running,
    snapshot,
    until,
)
from tests.ami.transcripts import fixtures_dir, load

MONITOR = "/var/spool/asterisk/monitor"
WAV_1 = "/var/spool/asterisk/monitor/calltracking/1795592516.1.wav"


async def test_a_local_call_found_in_operators_is_stored_answered_with_its_recording(
    tmp_path: Path,
) -> None:
    t = load("answered_call")
    # The dialplan half moved on to `operators` (the shipped dialplan's default route).
    channels = [
        dict(c, Context="operators") if c["Channel"].endswith("-00000000;2") else c
        for c in snapshot(t)
    ]
    dialplan_half = "Local/74951110001@from-trunk-00000000;2"
    session = Session(channels=channels, variables={dialplan_half: {"MIXMONITOR_FILENAME": WAV_1}})
    recorder = MemoryRecorder()
    key = CallKey("pbx1", "1795592516.0")
    async with FakeAsterisk([session]) as server:
        listener = make_listener(server.port, recorder, tmp_path)
        async with running(listener):
            await until(lambda: key in recorder.calls and recorder.calls[key].recording)
            await listener.drain()
    assert server.actions.count("Getvar") == 6  # 3 variables on the owner and its `;2` half
    call = recorder.calls[key]
    assert (call.did, call.caller, call.starts) == ("+74951110001", "+79161234567", 1)
    assert (call.answered_by, call.recording) == (OPERATOR, WAV_1)
    assert call.answered_at is not None and call.ended_at is None
    assert list(recorder.calls) == [key]


def _cut_after_answer(name: str) -> tuple[list[bytes], float]:
    """The transcript after login up to the bridge that answers it; that bridge's Timestamp."""
    blocks = after_login(load(name))
    for i, block in enumerate(blocks):
        if b"Event: BridgeEnter" in block and b"BridgeNumChannels: 2" in block:
            stamp = next(
                float(line.split(b": ", 1)[1])
                for line in block.split(b"\r\n")
                if line.startswith(b"Timestamp: ")
            )
            return blocks[: i + 1], stamp
    raise AssertionError("no answer in " + name)


async def test_a_call_that_talked_on_through_a_drop_ends_at_its_recordings_last_write(
    tmp_path: Path,
) -> None:
    before, answered = _cut_after_answer("answered_call_timestampevents")
    # MixMonitor wrote 4 s of talk after the answer, then the call hung up while we were cut off.
    wav = tmp_path / "calltracking" / "1795592604.77.wav"
    wav.parent.mkdir(parents=True)
    wav.write_bytes((fixtures_dir() / "recording_example.wav").read_bytes())
    os.utime(wav, (answered + 4, answered + 4))
    sessions = [Session(stream=before, then_close=True), Session()]  # then Asterisk shows nothing
    recorder = MemoryRecorder()
    readings = iter(range(1_000_000))
    # Within MAX_SKEW of Asterisk's stamps; every reading 1 ms later than the one before.
    clock = lambda: datetime.fromtimestamp(answered + 1 + next(readings) / 1000, UTC)  # noqa: E731
    async with FakeAsterisk(sessions) as server:
        listener = make_listener(server.port, recorder, tmp_path, clock=clock)
        async with running(listener):
            await until(lambda: ended(recorder, "1795592604.76"))
            assert listener.health.sessions == 2  # the same listener, reconnected
    call = recorder.calls[CallKey("pbx1", "1795592604.76")]
    assert (call.status, call.reconciled) == (CallStatus.ANSWERED, True)
    assert call.answered_at is not None and call.ended_at is not None
    talk = (call.ended_at - call.answered_at).total_seconds()
    assert abs(talk - 4) < 0.01


async def test_a_trunk_call_found_in_operators_is_not_lost(tmp_path: Path) -> None:
    """The simulated PBX runs the shipped dialplan's shape: the PJSIP trunk channel owns the
    Linkedid, set CALLTRACKING_DID and was dialed from `operators` before we connected."""
    monitor = tmp_path / "monitor"
    config = SimConfig(
        port=0, speed=10, route_context="operators", monitor_dir=monitor,
        asterisk_monitor_dir=MONITOR, late_close_s=0.5, username="tracker", secret="tracker",
    )  # fmt: skip
    sim = PbxSim(config)
    await sim.start()
    recorder = MemoryRecorder()
    try:
        placed = await sim.place_call(CallSpec("74951110006", "+79161234567", talk_s=20))
        await until(lambda: placed.state == "answered")
        key = CallKey("pbx1", placed.linkedid)
        # MixMonitor's file is written after the Hangup; on a busy machine that can take a while.
        patient = dataclasses.replace(FAST, recording_wait_s=30)
        listener = make_listener(sim.ami_port, recorder, monitor, timings=patient)
        async with running(listener):
            await until(lambda: key in recorder.calls and recorder.calls[key].answered_at)
            assert recorder.calls[key].ended_at is None  # found while it is still up
            await placed.finished
            await until(lambda: recorder.calls[key].recording_size is not None, within_s=30)
    finally:
        await sim.stop()
    call = recorder.calls[key]
    assert list(recorder.calls) == [key] and call.starts == 1
    assert (call.did, call.caller) == ("+74951110006", "+79161234567")
    assert (call.status, call.answered_by, call.reconciled) == (
        CallStatus.ANSWERED,
        "PJSIP/operator",
        False,  # its Hangup arrived live
    )
    assert call.recording == f"{MONITOR}/{placed.uniqueid}.wav"
    assert call.recording_size is not None and call.recording_size > 44


async def test_a_call_abandoned_after_3_s_lasts_3_s_by_asterisks_timestamps(
    tmp_path: Path,
) -> None:
    """Events carry Asterisk's Timestamp (timestampevents = yes) and reach us compressed in
    time (the PBX runs 10x fast, as a backlog would arrive): the call's own times stand."""
    sim = PbxSim(
        SimConfig(port=0, speed=10, timestampevents=True, username="tracker", secret="tracker")
    )
    await sim.start()
    recorder = MemoryRecorder()
    try:
        listener = make_listener(sim.ami_port, recorder, tmp_path)
        async with running(listener):
            await until(lambda: sim.ami_logins == 1)
            spec = CallSpec("74951110001", "+79161234567", Outcome.HANGUP_DURING_AGI, ring_s=3)
            placed = await sim.place_call(spec)
            await placed.finished
            await until(lambda: ended(recorder, placed.linkedid))
    finally:
        await sim.stop()
    call = recorder.calls[CallKey("pbx1", placed.linkedid)]
    assert call.status is CallStatus.MISSED and call.ended_at is not None
    duration = call.ended_at - call.started_at
    # By the times we read the events it lasted about 0.3 s; by Asterisk's own, 3 s (plus the
    # scheduling delays of a busy machine, scaled by the PBX's speed).
    assert timedelta(seconds=3) <= duration < timedelta(seconds=6)

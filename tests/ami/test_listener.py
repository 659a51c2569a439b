"""The AMI listener against a small AMI server on 127.0.0.1 replaying the recorded transcripts.

The server answers Login like Asterisk (the recorded reply, with the client's ActionID), Ping and
CoreShowChannels, and writes a transcript's bytes after the login over real TCP. The recorder is in
memory and idempotent per call, like the real store.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ami_listener import AmiListener, Timings
from ami_listener.backoff import Backoff
from calltracking.core.kinds import AttributionKind, CallStatus
from calltracking.core.records import CallKey, OpenCall, Resolution
from tests.ami.expected import EXPECTED, OPERATOR
from tests.ami.transcripts import SEP, Transcript, fixtures_dir, load, parse_block, render

MONITOR = "/var/spool/asterisk/monitor"
FAST = Timings(
    connect_timeout_s=2,
    login_timeout_s=2,
    action_timeout_s=2,
    backoff_initial_s=0.05,
    backoff_max_s=0.2,
    ping_interval_s=0.2,
    sweep_interval_s=0.1,
    settle_s=0.5,
    recording_poll_s=0.05,
    recording_wait_s=1.0,
)


# -- an in-memory CallRecorder -------------------------------------------------------------------
@dataclass
class StoredCall:
    did: str
    caller: str | None
    started_at: datetime
    status: CallStatus = CallStatus.RINGING
    answered_at: datetime | None = None
    answered_by: str | None = None
    ended_at: datetime | None = None
    hangup_cause: int | None = None
    reconciled: bool = False
    recording: str | None = None
    recording_size: int | None = None
    starts: int = 0


@dataclass
class MemoryRecorder:
    calls: dict[CallKey, StoredCall] = field(default_factory=dict)

    async def start_call(
        self, key: CallKey, did: str, caller: str | None, at: datetime
    ) -> Resolution:
        call = self.calls.setdefault(key, StoredCall(did, caller, at))
        call.starts += 1
        return Resolution(call_id=key.linkedid, kind=AttributionKind.UNKNOWN)

    async def answer_call(self, key: CallKey, at: datetime, answered_by: str | None) -> None:
        call = self.calls.get(key)
        if call is not None and call.answered_at is None and call.ended_at is None:
            call.answered_at, call.answered_by = at, answered_by

    async def end_call(
        self,
        key: CallKey,
        at: datetime,
        status: CallStatus,
        hangup_cause: int | None = None,
        *,
        reconciled: bool = False,
    ) -> None:
        call = self.calls.get(key)
        if call is not None and call.ended_at is None:
            call.ended_at, call.status, call.hangup_cause = at, status, hangup_cause
            call.reconciled = reconciled

    async def name_recording(self, key: CallKey, asterisk_path: str) -> None:
        if key in self.calls:
            self.calls[key].recording = asterisk_path

    async def confirm_recording(self, key: CallKey, size_bytes: int) -> None:
        call = self.calls.get(key)
        if call is not None and call.recording_size is None:
            call.recording_size = size_bytes

    async def open_calls(self, pbx_id: str) -> list[OpenCall]:
        return [
            OpenCall(
                key,
                key.linkedid,
                c.started_at,
                c.answered_at,
                c.recording if c.recording_size is None else None,
            )
            for key, c in self.calls.items()
            if key.pbx_id == pbx_id and c.ended_at is None
        ]


# -- a small Asterisk ------------------------------------------------------------------------------
@dataclass
class Session:
    """What the server does on one connection after a successful login."""

    stream: list[bytes] = field(default_factory=list)  # blocks, written after CoreShowChannels
    channels: list[dict[str, str]] = field(default_factory=list)  # CoreShowChannel headers
    then_close: bool = False
    tail: bytes = b""  # raw bytes after the stream (truncated messages)
    variables: dict[str, dict[str, str]] = field(default_factory=dict)  # channel -> Getvar values


class FakeAsterisk:
    def __init__(self, sessions: list[Session], refuse_logins: int = 0) -> None:
        self.sessions = sessions
        self.refuse_logins = refuse_logins
        self.logins = 0
        self.actions: list[str] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> FakeAsterisk:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        writer.write(b"Asterisk Call Manager/11.0.0\r\n")
        session: Session | None = None
        try:
            while True:
                block = await reader.readuntil(SEP)
                action = parse_block(block.rstrip(b"\r\n"))
                name, action_id = action.get("Action", ""), action.get("ActionID", "")
                self.actions.append(name)
                if name == "Login":
                    session = self._login(writer, action_id)
                    if session is None:
                        break
                elif name == "Ping":
                    writer.write(
                        render(
                            {
                                "Response": "Success",
                                "ActionID": action_id,
                                "Ping": "Pong",
                                "Timestamp": "1795592516.0",
                            }
                        )
                    )
                elif name == "Getvar" and session is not None:
                    writer.write(self._getvar(action, session))
                elif name == "CoreShowChannels" and session is not None:
                    self._show_channels(writer, action_id, session)
                    task = asyncio.create_task(self._stream(writer, session))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                else:
                    writer.write(
                        render(
                            {
                                "Response": "Error",
                                "ActionID": action_id,
                                "Message": "Invalid/unknown command",
                            }
                        )
                    )
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def _login(self, writer: asyncio.StreamWriter, action_id: str) -> Session | None:
        self.logins += 1
        if self.logins <= self.refuse_logins:
            failed = load_raw("ami_login_failed.txt").split(b"\r\n", 1)[1]
            writer.write(failed.replace(b"badlogin-login", action_id.encode()))
            return None
        reply = load("answered_call").blocks[0].replace(b"tracker-login", action_id.encode())
        writer.write(
            reply + SEP + b"Event: FullyBooted\r\nPrivilege: system,all\r\n"
            b"Status: Fully Booted\r\n\r\n"
        )
        index = self.logins - self.refuse_logins - 1
        return self.sessions[index] if index < len(self.sessions) else Session()

    @staticmethod
    def _getvar(action: dict[str, str], session: Session) -> bytes:
        """Asterisk's reply: the value (empty when unset), or an error for a gone channel."""
        aid, channel = action.get("ActionID", ""), action.get("Channel", "")
        shown = {c.get("Channel") for c in session.channels}
        if channel not in shown:
            return render({"Response": "Error", "ActionID": aid, "Message": "No such channel"})
        variable = action.get("Variable", "")
        value = session.variables.get(channel, {}).get(variable, "")
        return render(
            {"Response": "Success", "ActionID": aid, "Variable": variable, "Value": value}
        )

    @staticmethod
    def _show_channels(writer: asyncio.StreamWriter, action_id: str, session: Session) -> None:
        out = [
            render(
                {
                    "Response": "Success",
                    "ActionID": action_id,
                    "EventList": "start",
                    "Message": "Channels will follow",
                }
            )
        ]
        out += [render({**c, "ActionID": action_id}) for c in session.channels]
        out.append(
            render(
                {
                    "Event": "CoreShowChannelsComplete",
                    "ActionID": action_id,
                    "EventList": "Complete",
                    "ListItems": str(len(session.channels)),
                }
            )
        )
        writer.write(b"".join(out))

    @staticmethod
    async def _stream(writer: asyncio.StreamWriter, session: Session) -> None:
        for block in session.stream:
            writer.write(block + SEP)
            await asyncio.sleep(0)  # let the bytes go out in many TCP segments
        writer.write(session.tail)
        try:
            await writer.drain()
        except ConnectionError:
            return  # the listener has what it needed and left: Asterisk would shrug too
        if session.then_close:
            writer.transport.abort()


def load_raw(name: str) -> bytes:
    return (fixtures_dir() / name).read_bytes()


def after_login(t: Transcript) -> list[bytes]:
    return list(t.blocks[1:])


def snapshot(t: Transcript) -> list[dict[str, str]]:
    return [
        {k: v for k, v in m.items() if k != "ActionID"}
        for m in t.messages
        if m.get("Event") == "CoreShowChannel"
    ]


# -- helpers ---------------------------------------------------------------------------------------
def make_listener(
    port: int,
    recorder: MemoryRecorder,
    recordings: Path,
    *,
    timings: Timings = FAST,
    clock: Callable[[], datetime] | None = None,
    stale_call_s: float = 14_400,
) -> AmiListener:
    return AmiListener(
        host="127.0.0.1",
        port=port,
        username="tracker",
        secret="tracker",
        pbx_id="pbx1",
        trunk_contexts=["from-trunk"],
        country_code="7",
        recordings_dir=recordings,
        asterisk_monitor_dir=MONITOR,
        stale_call_s=stale_call_s,
        recorder=recorder,
        timings=timings,
        clock=clock,
    )


@contextlib.asynccontextmanager
async def running(listener: AmiListener) -> AsyncIterator[AmiListener]:
    task = asyncio.create_task(listener.run())
    try:
        yield listener
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(check: Callable[[], object], within_s: float = 5.0) -> None:
    """Poll a condition on the recorder (plain data, nothing to await on)."""
    async with asyncio.timeout(within_s):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def ended(recorder: MemoryRecorder, linkedid: str) -> bool:
    call = recorder.calls.get(CallKey("pbx1", linkedid))
    return call is not None and call.ended_at is not None


# -- the fixtures, end to end ------------------------------------------------------------------
CASES = {name: case for name, case in EXPECTED.items() if name != "answered_call_limited_user"}


@pytest.mark.parametrize("name", sorted(CASES))
async def test_each_transcript_is_stored_field_by_field(name: str, tmp_path: Path) -> None:
    linkedid, did, caller, answered_by, status, cause, wav = CASES[name]
    t = load(name)
    wav_size = 0
    if wav is not None:  # what Asterisk leaves behind: real audio, or a bare header when unanswered
        example = (
            "recording_example.wav" if answered_by else "recording_example_unanswered_empty.wav"
        )
        target = tmp_path / "calltracking" / wav
        target.parent.mkdir()
        shutil.copy(fixtures_dir() / example, target)
        wav_size = target.stat().st_size
    recorder = MemoryRecorder()
    async with FakeAsterisk([Session(stream=after_login(t))]) as server:
        listener = make_listener(server.port, recorder, tmp_path)
        async with running(listener):
            await until(lambda: ended(recorder, linkedid))
            if wav_size > 44:
                await until(lambda: recorder.calls[CallKey("pbx1", linkedid)].recording_size)
            else:
                await asyncio.sleep(FAST.recording_wait_s + 0.3)  # it gives up on a bare header
            assert listener.health.logged_in
    assert list(recorder.calls) == [CallKey("pbx1", linkedid)]
    call = recorder.calls[CallKey("pbx1", linkedid)]
    assert (call.did, call.caller, call.status, call.hangup_cause) == (did, caller, status, cause)
    assert call.answered_by == answered_by
    assert (call.answered_at is not None) == (status is CallStatus.ANSWERED)
    assert call.started_at <= (call.answered_at or call.started_at) <= call.ended_at  # type: ignore[operator]
    assert call.starts == 1
    assert call.reconciled is False
    assert call.recording == (f"{MONITOR}/calltracking/{wav}" if wav else None)
    assert call.recording_size == (wav_size if wav_size > 44 else None)
    assert server.actions[:2] == ["Login", "CoreShowChannels"]


async def test_asterisk_timestamps_are_the_call_times(tmp_path: Path) -> None:
    t = load("answered_call_timestampevents")
    stamps = [float(m["Timestamp"]) for m in t.events if m["Event"] in ("Newchannel", "Hangup")]
    recorder = MemoryRecorder()
    clock = lambda: datetime.fromtimestamp(stamps[0] + 1, UTC)  # noqa: E731
    async with (
        FakeAsterisk([Session(stream=after_login(t))]) as server,
        running(make_listener(server.port, recorder, tmp_path, clock=clock)),
    ):
        await until(lambda: ended(recorder, "1795592604.76"))
    call = recorder.calls[CallKey("pbx1", "1795592604.76")]
    assert call.started_at == datetime.fromtimestamp(stamps[0], UTC)
    assert call.ended_at == datetime.fromtimestamp(stamps[-1], UTC)


# -- faults ------------------------------------------------------------------------------------
def split_at_bridge(t: Transcript) -> tuple[list[bytes], list[bytes]]:
    """The answered call cut while the caller and the operator talk (before any hangup)."""
    blocks = after_login(t)
    cut = next(
        i for i, b in enumerate(blocks) if b.startswith(b"Response: Success\r\nActionID: csc")
    )
    rest = [b for b in blocks[cut:] if b"ActionID: csc-1" not in b and b"getvar" not in b]
    return blocks[:cut], rest


async def test_a_dropped_connection_is_reconciled_and_the_call_stored_once(
    tmp_path: Path,
) -> None:
    t = load("answered_call")
    before, after = split_at_bridge(t)
    sessions = [
        Session(stream=before, then_close=True),
        Session(stream=after, channels=snapshot(t)),
    ]
    recorder = MemoryRecorder()
    async with FakeAsterisk(sessions) as server:
        listener = make_listener(server.port, recorder, tmp_path)
        async with running(listener):
            await until(lambda: ended(recorder, "1795592516.0"))
            await listener.drain()
            assert listener.health.sessions == 2
    assert server.logins == 2
    call = recorder.calls[CallKey("pbx1", "1795592516.0")]
    assert len(recorder.calls) == 1
    assert (call.status, call.answered_by, call.hangup_cause) == (CallStatus.ANSWERED, OPERATOR, 16)
    assert call.reconciled is False  # its Hangups came after the reconnect


async def test_a_call_that_ended_during_the_outage_is_closed_reconciled(tmp_path: Path) -> None:
    before, _after = split_at_bridge(load("answered_call"))
    sessions = [Session(stream=before, then_close=True), Session()]  # Asterisk shows nothing
    recorder = MemoryRecorder()
    async with (
        FakeAsterisk(sessions) as server,
        running(make_listener(server.port, recorder, tmp_path)),
    ):
        await until(lambda: ended(recorder, "1795592516.0"))
    call = recorder.calls[CallKey("pbx1", "1795592516.0")]
    assert (call.status, call.reconciled, call.answered_by) == (CallStatus.ANSWERED, True, OPERATOR)
    assert call.starts == 1


async def test_a_restarted_listener_still_confirms_the_recording_of_a_call_it_closes(
    tmp_path: Path,
) -> None:
    before, _after = split_at_bridge(load("answered_call"))
    recorder = MemoryRecorder()
    async with (
        FakeAsterisk([Session(stream=before, then_close=True)]) as server,
        running(make_listener(server.port, recorder, tmp_path)),
    ):
        key = CallKey("pbx1", "1795592516.0")
        await until(
            lambda: recorder.calls.get(key) is not None and bool(recorder.calls[key].recording)
        )
    stored = recorder.calls[key].recording
    assert stored is not None
    target = tmp_path / stored.removeprefix(MONITOR + "/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(fixtures_dir() / "recording_example.wav", target)
    hung_up = datetime.now(UTC) - timedelta(minutes=5)  # MixMonitor's last write
    os.utime(target, (hung_up.timestamp(), hung_up.timestamp()))
    # A new listener (the tracker restarted): Asterisk no longer shows the call.
    async with (
        FakeAsterisk([Session()]) as server,
        running(make_listener(server.port, recorder, tmp_path)),
    ):
        await until(lambda: recorder.calls[key].recording_size is not None)
    call = recorder.calls[key]
    assert (call.reconciled, call.recording_size) == (True, target.stat().st_size)
    # The end is when the recording stopped, not when the restarted listener noticed.
    assert call.ended_at is not None
    assert abs((call.ended_at - hung_up).total_seconds()) < 1


async def test_a_call_ringing_when_we_connect_is_adopted(tmp_path: Path) -> None:
    t = load("answered_call")
    _before, after = split_at_bridge(t)
    recorder = MemoryRecorder()
    async with (
        FakeAsterisk([Session(stream=after, channels=snapshot(t))]) as server,
        running(make_listener(server.port, recorder, tmp_path)),
    ):
        await until(lambda: ended(recorder, "1795592516.0"))
    call = recorder.calls[CallKey("pbx1", "1795592516.0")]
    assert (call.did, call.caller, call.status) == (
        "+74951110001",
        "+79161234567",
        CallStatus.ANSWERED,
    )


async def test_garbage_and_truncated_messages_do_not_hurt(tmp_path: Path) -> None:
    t = load("busy")
    junk = [
        b"garbage line without a colon",
        b"\xff\xfe\x00binary: \xc3",
        b"Event: Hangup",
        b"Event: Hangup\r\nLinkedid: 1795592545.22\r\nUniqueid",
        b"Event: VarSet\r\n: x",
    ]
    blocks = after_login(t)
    mixed = [x for i, b in enumerate(blocks) for x in (b, junk[i % len(junk)])]
    truncated = b"Event: Newchannel\r\nChannel: Local/7495@from-trunk-000000ff;1\r\nConte"
    sessions = [Session(stream=mixed, tail=truncated, then_close=True), Session()]
    recorder = MemoryRecorder()
    async with FakeAsterisk(sessions) as server:
        listener = make_listener(server.port, recorder, tmp_path)
        async with running(listener):
            await until(lambda: ended(recorder, "1795592545.22"))
            await until(lambda: server.logins == 2)
            await until(lambda: listener.health.logged_in)
    assert len(recorder.calls) == 1
    call = recorder.calls[CallKey("pbx1", "1795592545.22")]
    assert (call.status, call.hangup_cause, call.reconciled) == (CallStatus.BUSY, 16, False)


async def test_a_recording_that_appears_late_is_confirmed(tmp_path: Path) -> None:
    recorder = MemoryRecorder()
    timings = dataclasses.replace(FAST, recording_wait_s=3.0)
    async with (
        FakeAsterisk([Session(stream=after_login(load("answered_call")))]) as server,
        running(make_listener(server.port, recorder, tmp_path, timings=timings)),
    ):
        await until(lambda: ended(recorder, "1795592516.0"))
        await asyncio.sleep(0.5)  # MixMonitor is still writing somewhere else
        call = recorder.calls[CallKey("pbx1", "1795592516.0")]
        assert call.recording_size is None
        target = tmp_path / "calltracking" / "1795592516.1.wav"
        target.parent.mkdir()
        shutil.copy(fixtures_dir() / "recording_example.wav", target)
        await until(lambda: call.recording_size is not None)
    assert call.recording_size == 32364


async def test_a_refused_login_is_logged_and_retried_with_back_off(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = MemoryRecorder()
    t = load("busy")
    async with FakeAsterisk([Session(stream=after_login(t))], refuse_logins=3) as server:
        listener = make_listener(server.port, recorder, tmp_path)
        with caplog.at_level(logging.INFO, logger="ami_listener"):
            async with running(listener):
                await until(lambda: server.logins >= 2)
                assert listener.health.logged_in is False
                assert "login refused" in (listener.health.last_error or "")
                await until(lambda: ended(recorder, "1795592545.22"))
    assert server.logins == 4
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 3
    assert "tracker" in refusals[0].getMessage()
    assert "Authentication failed" in refusals[0].getMessage()
    assert "secret" not in " ".join(r.getMessage() for r in caplog.records).lower()


def test_back_off_grows_with_jitter_to_its_ceiling_and_resets() -> None:
    import random

    backoff = Backoff(1.0, 30.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(8)]
    for n, delay in enumerate(delays):
        ceiling = min(30.0, 2.0**n)
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays)) == len(delays)  # jittered
    backoff.reset()
    assert 0.5 <= backoff.next_delay() <= 1.0


async def test_calls_nothing_confirms_go_stale_as_unknown(tmp_path: Path) -> None:
    recorder = MemoryRecorder()
    old = CallKey("pbx1", "1.1")
    recorder.calls[old] = StoredCall("+74951110001", None, datetime(2026, 1, 1, tzinfo=UTC))
    listener = make_listener(1, recorder, tmp_path, stale_call_s=60)
    await listener.sweep(datetime(2026, 1, 1, 0, 0, 59, tzinfo=UTC))
    assert recorder.calls[old].ended_at is None
    await listener.sweep(datetime(2026, 1, 1, 0, 1, tzinfo=UTC))
    assert (recorder.calls[old].status, recorder.calls[old].reconciled) == (
        CallStatus.UNKNOWN,
        True,
    )

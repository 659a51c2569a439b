"""The FastAGI server against a fake Asterisk on 127.0.0.1, driven by the captured transcripts.

The fake Asterisk sends the `agi_*` block byte for byte as Asterisk did, sends `HANGUP` where the
capture had one before a reply, answers each command (`200 result=1`, or the Linkedid for
`GET FULL VARIABLE "${CHANNEL(linkedid)}"`), and parses what the server sets with Asterisk's own
argument rules (res_agi.c parse_args), so quoting is checked by a reader the server did not write.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agi import AgiServer, Outcome
from calltracking.core.kinds import AttributionKind, CallStatus
from calltracking.core.records import CallKey, OpenCall, Resolution
from tests.agi.agi_args import agi_args

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TRANSCRIPTS = sorted(FIXTURES.glob("*.asterisk_to_server.txt"))
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
PBX = "pbx-test"
LINKEDID_GET = 'GET FULL VARIABLE "${CHANNEL(linkedid)}"'
SET_ORDER = [
    "CALLTRACKING_SITE",
    "CALLTRACKING_SOURCE",
    "CALLTRACKING_MEDIUM",
    "CALLTRACKING_CAMPAIGN",
    "CALLTRACKING_LABEL",
    "CALLTRACKING_ROUTE",
    "CALLTRACKING_RECORD",
    "CALLTRACKING_KIND",
]
ERROR_SETS = [("CALLTRACKING_ERROR", "1"), ("CALLTRACKING_KIND", "unknown")]

RESOLUTIONS = {
    "+74951110001": Resolution("c1", AttributionKind.DYNAMIC, "site-1", "yandex", "cpc", "spring"),
    "+74951110002": Resolution(
        "c2", AttributionKind.HELD, "site-1", "google", "cpc", None, "sales@operators"
    ),
    "+74951110003": Resolution("c3", AttributionKind.STATIC, "site-2", "avito", "listing"),
    "+74951110009": Resolution(
        "c9", AttributionKind.COOLED, "site-1", "telegram", "channel", record=False
    ),
}
UNKNOWN = Resolution("c0", AttributionKind.UNKNOWN, record=False)

# Per capture: the caller the server must report (normalised; None when withheld).
CALLERS = {
    "anonymous_caller": None,
    "answered_call": "+79161234567",
    "answered_call_timestampevents": "+79161234567",
    "busy": "+79265554433",
    "caller_hangs_up_during_agi": "+79161234567",
    "no_answer": "+79031112233",
    "no_callerid": None,
    "unknown_did": "+79161234567",
}


class MemoryRecorder:
    """CallRecorder in memory: `start_call` answers from a table, optionally slow or failing."""

    def __init__(self, delay_s: float = 0.0, error: Exception | None = None) -> None:
        self.calls: list[tuple[CallKey, str, str | None, datetime]] = []
        self.delay_s = delay_s
        self.error = error
        self.cancelled = False
        self.started = asyncio.Event()

    async def start_call(
        self, key: CallKey, did: str, caller: str | None, at: datetime
    ) -> Resolution:
        self.calls.append((key, did, caller, at))
        self.started.set()
        try:
            await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        if self.error is not None:
            raise self.error
        return RESOLUTIONS.get(did, UNKNOWN)

    async def answer_call(self, key: CallKey, at: datetime, answered_by: str | None) -> None:
        raise NotImplementedError

    async def end_call(
        self,
        key: CallKey,
        at: datetime,
        status: CallStatus,
        hangup_cause: int | None = None,
        *,
        reconciled: bool = False,
    ) -> None:
        raise NotImplementedError

    async def name_recording(self, key: CallKey, asterisk_path: str) -> None:
        raise NotImplementedError

    async def confirm_recording(self, key: CallKey, size_bytes: int) -> None:
        raise NotImplementedError

    async def open_calls(self, pbx_id: str) -> list[OpenCall]:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Transcript:
    name: str
    env_block: bytes  # up to and including the blank line
    hangup_before: frozenset[int]  # replies that a HANGUP line preceded

    @property
    def env(self) -> dict[str, str]:
        lines = self.env_block.decode().split("\n")
        pairs = (line.partition(": ") for line in lines if line)
        return {name.rstrip(":"): value for name, _, value in pairs}

    @property
    def linkedid(self) -> str:
        # In the captures the AGI ran on the Local ;2 leg; the Linkedid is its ;1 sibling's id.
        epoch, seq = self.env["agi_uniqueid"].split(".")
        return f"{epoch}.{int(seq) - 1}"


def load(path: Path) -> Transcript:
    data = path.read_bytes()
    end = data.index(b"\n\n") + 2
    hangups, replies = set(), 0
    for line in data[end:].split(b"\n"):
        if line == b"HANGUP":
            hangups.add(replies)
        elif line:
            replies += 1
    # The last HANGUP follows the server's close in every session: it is not mid-dialogue.
    hangups.discard(replies)
    name = path.name.removeprefix("fastagi_").removesuffix(".asterisk_to_server.txt")
    return Transcript(name, data[:end], frozenset(hangups))


BASE = load(FIXTURES / "fastagi_answered_call.asterisk_to_server.txt")


def env_block(**changes: str | None) -> bytes:
    """The answered_call block with `agi_<name>` lines changed (None removes the line)."""
    lines = []
    for line in BASE.env_block.decode().split("\n")[:-2]:
        name = line.split(":", 1)[0].removeprefix("agi_")
        if name not in changes:
            lines.append(line)
        elif changes[name] is not None:
            lines.append(f"agi_{name}: {changes[name]}")
    return ("\n".join(lines) + "\n\n").encode()


@dataclass
class Session:
    commands: list[str] = field(default_factory=list)

    @property
    def sets(self) -> list[tuple[str, str]]:
        out = []
        for command in self.commands:
            args = agi_args(command)
            if args[:2] == ["SET", "VARIABLE"]:
                assert len(args) == 4, command
                out.append((args[2], args[3]))
        return out


def linkedid_reply(linkedid: str | None) -> Callable[[str], str]:
    def answer(command: str) -> str:
        if command == LINKEDID_GET:
            return f"200 result=1 ({linkedid or ''})"
        return "200 result=1"

    return answer


async def asterisk(
    port: int,
    block: bytes,
    answer: Callable[[str], str],
    hangup_before: frozenset[int] = frozenset(),
) -> Session:
    """Play Asterisk's side of one FastAGI session until the server closes the socket."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    session = Session()
    try:
        writer.write(block)
        await writer.drain()
        while line := await reader.readline():
            command = line.decode().removesuffix("\n")
            if len(session.commands) in hangup_before:
                writer.write(b"HANGUP\n")
            session.commands.append(command)
            writer.write(answer(command).encode() + b"\n")
            await writer.drain()
        # As Asterisk does after every session, once it has read the server's EOF.
        with contextlib.suppress(ConnectionError):
            writer.write(b"HANGUP\n")
            await writer.drain()
    except ConnectionResetError:
        pass  # the server closed with our bytes unread: the same end for this client
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return session


def counted(server: AgiServer) -> dict[str, int]:
    """The outcomes counted so far. The server counts before it closes the socket, so once the
    client has read EOF the count is there."""
    return {outcome: count for outcome, count in server.counters().items() if count}


async def settled(server: AgiServer, outcome: Outcome) -> None:
    """Wait for the count of a connection the client closed first: the server learns of that
    close only when it reads it, which nothing outside can wait on."""
    async with asyncio.timeout(2):
        while not server.counters()[outcome]:  # noqa: ASYNC110
            await asyncio.sleep(0.005)


@pytest.fixture
def recorder() -> MemoryRecorder:
    return MemoryRecorder()


@pytest.fixture
async def server(recorder: MemoryRecorder) -> AsyncIterator[AgiServer]:
    agi = AgiServer(recorder, PBX, "7", "127.0.0.1", 0, clock=lambda: NOW)
    await agi.start()
    yield agi
    await agi.stop()


async def play(server: AgiServer, transcript: Transcript = BASE) -> Session:
    return await asyncio.wait_for(
        asterisk(
            server.port,
            transcript.env_block,
            linkedid_reply(transcript.linkedid),
            transcript.hangup_before,
        ),
        timeout=3,
    )


# --- the captured sessions ---------------------------------------------------------------


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: load(p).name)
async def test_captured_session_sets_the_resolution(
    server: AgiServer, recorder: MemoryRecorder, path: Path
) -> None:
    transcript = load(path)
    session = await play(server, transcript)

    did = "+" + transcript.env["agi_network_script"].split("did=")[1]
    assert recorder.calls == [
        (CallKey(PBX, transcript.linkedid), did, CALLERS[transcript.name], NOW)
    ]
    assert session.commands[0] == LINKEDID_GET
    resolution = RESOLUTIONS.get(did, UNKNOWN)
    assert session.sets == [
        ("CALLTRACKING_SITE", resolution.site_id or ""),
        ("CALLTRACKING_SOURCE", resolution.source or ""),
        ("CALLTRACKING_MEDIUM", resolution.medium or ""),
        ("CALLTRACKING_CAMPAIGN", resolution.campaign or ""),
        ("CALLTRACKING_LABEL", resolution.label),
        ("CALLTRACKING_ROUTE", resolution.route or ""),
        ("CALLTRACKING_RECORD", "1" if resolution.record else "0"),
        ("CALLTRACKING_KIND", str(resolution.kind)),
    ]
    assert len(session.commands) == 1 + len(SET_ORDER)
    assert counted(server) == {"resolved": 1}


async def test_variables_field_by_field(server: AgiServer) -> None:
    session = await play(server)
    assert dict(session.sets) == {
        "CALLTRACKING_SITE": "site-1",
        "CALLTRACKING_SOURCE": "yandex",
        "CALLTRACKING_MEDIUM": "cpc",
        "CALLTRACKING_CAMPAIGN": "spring",
        "CALLTRACKING_LABEL": "yandex/cpc",
        "CALLTRACKING_ROUTE": "",
        "CALLTRACKING_RECORD": "1",
        "CALLTRACKING_KIND": "dynamic",
    }
    assert [name for name, _ in session.sets] == SET_ORDER  # KIND last


async def test_route_and_no_recording_reach_the_channel(server: AgiServer) -> None:
    session = await play(server, load(FIXTURES / "fastagi_no_answer.asterisk_to_server.txt"))
    assert dict(session.sets)["CALLTRACKING_ROUTE"] == "sales@operators"
    assert dict(session.sets)["CALLTRACKING_CAMPAIGN"] == ""
    session = await play(server, load(FIXTURES / "fastagi_unknown_did.asterisk_to_server.txt"))
    assert dict(session.sets)["CALLTRACKING_RECORD"] == "0"
    assert dict(session.sets)["CALLTRACKING_SITE"] == ""
    assert dict(session.sets)["CALLTRACKING_LABEL"] == "unknown"


async def test_values_are_quoted_for_the_agi_command_line(
    server: AgiServer, recorder: MemoryRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    tricky = Resolution(
        "c1", AttributionKind.DYNAMIC, "site-1", "my site", "cpc", 'sale "50%" \\ now\nSET X'
    )
    monkeypatch.setitem(RESOLUTIONS, "+74951110001", tricky)
    session = await play(server)
    assert dict(session.sets)["CALLTRACKING_CAMPAIGN"] == 'sale "50%" \\ nowSET X'
    assert dict(session.sets)["CALLTRACKING_SOURCE"] == "my site"
    assert len(session.commands) == 1 + len(SET_ORDER)  # the line break made no extra command


# --- where the DID and the caller come from --------------------------------------------


@pytest.mark.parametrize(
    ("script", "arg_1", "extension", "did"),
    [
        ("calltracking?did=74951110001", "74951110002", "74951110003", "+74951110001"),
        ("calltracking", "84951110002", "74951110003", "+74951110002"),
        ("calltracking", None, "4951110003", "+74951110003"),
        ("calltracking", "", "74951110003", "+74951110003"),
        ("calltracking?did=", "74951110002", "74951110003", "+74951110002"),
        ("calltracking?x=1&did=%2B74951110004", None, "s", "+74951110004"),
        ("calltracking?did=+74951110005", None, "s", "+74951110005"),  # "+" is no space
        ("calltracking?did=0074951110006", None, "s", "+74951110006"),
        ("calltracking?did=81074951110007", None, "s", "+74951110007"),
        ("calltracking?did=+12125551234", None, "s", "+12125551234"),
    ],
)
async def test_did_comes_from_query_then_argument_then_extension(
    server: AgiServer,
    recorder: MemoryRecorder,
    script: str,
    arg_1: str | None,
    extension: str,
    did: str,
) -> None:
    block = env_block(network_script=script, arg_1=arg_1, arg_2=None, extension=extension)
    await asyncio.wait_for(asterisk(server.port, block, linkedid_reply("L1")), 3)
    assert [(key, got) for key, got, _, _ in recorder.calls] == [(CallKey(PBX, "L1"), did)]


@pytest.mark.parametrize(
    ("script", "arg_1", "extension"),
    [
        ("calltracking", None, "s"),  # no DID in the request
        ("calltracking", "101", "74951110001"),  # the first present source decides
        ("calltracking?did=sip:foo@example.com", "74951110001", "74951110001"),
    ],
)
async def test_did_that_is_not_a_number_is_ignored(
    server: AgiServer, recorder: MemoryRecorder, script: str, arg_1: str | None, extension: str
) -> None:
    block = env_block(network_script=script, arg_1=arg_1, extension=extension)
    session = await asyncio.wait_for(asterisk(server.port, block, linkedid_reply("L1")), 3)
    assert session.commands == []  # no KIND: the dialplan takes its default route
    assert recorder.calls == []
    assert counted(server) == {"ignored": 1}


@pytest.mark.parametrize(
    ("callerid", "caller"),
    [
        ("anonymous", None),
        ("unknown", None),
        ("", None),
        ("<unknown>", None),
        ("Restricted", None),
        ("101", None),  # an internal extension is no caller number
        ("84951234567", "+74951234567"),
        ("+79161234567", "+79161234567"),
        ("9161234567", "+79161234567"),
    ],
)
async def test_caller_is_normalised_or_withheld(
    server: AgiServer, recorder: MemoryRecorder, callerid: str, caller: str | None
) -> None:
    await asyncio.wait_for(
        asterisk(server.port, env_block(callerid=callerid), linkedid_reply("L1")), 3
    )
    assert [got for _, _, got, _ in recorder.calls] == [caller]


@pytest.mark.parametrize("reply", ["200 result=1 ()", "200 result=0", "511 Command Not Permitted"])
async def test_linkedid_falls_back_to_the_uniqueid(
    server: AgiServer, recorder: MemoryRecorder, reply: str
) -> None:
    def answer(command: str) -> str:
        return reply if command == LINKEDID_GET else "200 result=1"

    await asyncio.wait_for(asterisk(server.port, BASE.env_block, answer), 3)
    assert [key for key, _, _, _ in recorder.calls] == [CallKey(PBX, "1795592516.1")]


async def test_other_script_is_refused(server: AgiServer, recorder: MemoryRecorder) -> None:
    block = env_block(network_script="billing?did=74951110001")
    session = await asyncio.wait_for(asterisk(server.port, block, linkedid_reply("L1")), 3)
    assert session.commands == []
    assert recorder.calls == []
    assert counted(server) == {"refused": 1}


# --- faults ------------------------------------------------------------------------------


async def test_peer_closing_inside_the_header_does_not_stall_the_server(
    server: AgiServer, recorder: MemoryRecorder
) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"agi_network: yes\n")
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    await settled(server, Outcome.HEADER_CLOSED)
    # The loop is free and the port still serves: the next call goes through at once.
    session = await play(server)
    assert dict(session.sets)["CALLTRACKING_KIND"] == "dynamic"
    assert len(recorder.calls) == 1


async def test_header_without_blank_line_times_out(server: AgiServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(BASE.env_block[:-1])  # everything but the blank line
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), timeout=3) == b""  # closed, nothing sent
    writer.close()
    await writer.wait_closed()
    assert counted(server) == {"header_timeout": 1}


async def test_oversized_header_is_refused(server: AgiServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    filler = b"".join(b"agi_arg_%d: %s\n" % (n, b"x" * 100) for n in range(1, 400))
    with contextlib.suppress(ConnectionError):
        writer.write(BASE.env_block[:-1] + filler + b"\n")
        await writer.drain()
    with contextlib.suppress(ConnectionResetError):
        assert await asyncio.wait_for(reader.read(), timeout=3) == b""
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    assert counted(server) == {"header_too_large": 1}


async def test_header_that_is_not_agi_is_refused(server: AgiServer) -> None:
    session = await asyncio.wait_for(
        asterisk(server.port, b"hello there\n\n", linkedid_reply("L1")), 3
    )
    assert session.commands == []
    assert counted(server) == {"bad_header": 1}


async def test_hangup_lines_mid_dialogue_do_not_stop_it(
    server: AgiServer, recorder: MemoryRecorder
) -> None:
    session = await asyncio.wait_for(
        asterisk(server.port, BASE.env_block, linkedid_reply("L1"), frozenset({0, 2, 5})), 3
    )
    assert [name for name, _ in session.sets] == SET_ORDER
    assert len(recorder.calls) == 1
    assert counted(server) == {"resolved": 1}


async def test_dead_channel_ends_the_dialogue_quietly(
    server: AgiServer, recorder: MemoryRecorder
) -> None:
    def answer(command: str) -> str:
        if command == LINKEDID_GET:
            return "200 result=1 (L1)"
        return "511 Command Not Permitted on a dead channel or intercept routine"

    hangup = frozenset({1})
    session = await asyncio.wait_for(asterisk(server.port, BASE.env_block, answer, hangup), 3)
    assert session.sets == [("CALLTRACKING_SITE", "site-1")]  # nothing after the 511
    assert counted(server) == {"hangup": 1}


async def test_peer_closing_mid_dialogue_is_a_hangup(server: AgiServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(BASE.env_block)
    await writer.drain()
    assert (await asyncio.wait_for(reader.readline(), 3)).decode().strip() == LINKEDID_GET
    writer.close()
    await writer.wait_closed()
    await settled(server, Outcome.HANGUP)
    assert (await play(server)).sets  # and the next call is served


@pytest.mark.parametrize(
    "garbage", ["hello", "200 nonsense", "200 result=1 (x) trailing", "", "HANGUP!"]
)
async def test_garbage_reply_sets_the_error_variables(server: AgiServer, garbage: str) -> None:
    def answer(command: str) -> str:
        return garbage if command == LINKEDID_GET else "200 result=1"

    session = await asyncio.wait_for(asterisk(server.port, BASE.env_block, answer), 3)
    assert session.sets == ERROR_SETS
    assert counted(server) == {"error": 1}


async def test_usage_block_is_read_to_its_end(server: AgiServer) -> None:
    usage = "520-Invalid command syntax.  Proper usage follows:\nUsage: ...\n520 End of usage."

    def answer(command: str) -> str:
        return usage if command == LINKEDID_GET else "200 result=1"

    session = await asyncio.wait_for(asterisk(server.port, BASE.env_block, answer), 3)
    assert session.sets == ERROR_SETS  # each SET got its own reply: the usage lines were skipped
    assert counted(server) == {"error": 1}


async def test_a_refused_set_ends_the_sets_and_the_dialogue_reports_its_error(
    server: AgiServer,
) -> None:
    def answer(command: str) -> str:
        if command == LINKEDID_GET:
            return "200 result=1 (L1)"
        if "CALLTRACKING_MEDIUM" in command:
            return "510 Invalid or unknown command"
        return "200 result=1"

    session = await asyncio.wait_for(asterisk(server.port, BASE.env_block, answer), 3)
    names = [name for name, _ in session.sets]
    # SITE, SOURCE, then MEDIUM refused: nothing more of the resolution, the error instead
    assert names == ["CALLTRACKING_SITE", "CALLTRACKING_SOURCE", "CALLTRACKING_MEDIUM"] + [
        name for name, _ in ERROR_SETS
    ]
    assert counted(server) == {"error": 1}


async def test_each_command_is_sent_only_after_the_reply_to_the_one_before(
    server: AgiServer,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    commands = []
    try:
        writer.write(BASE.env_block)
        await writer.drain()
        while line := await asyncio.wait_for(reader.readline(), 3):
            commands.append(line.decode().removesuffix("\n"))
            # Asterisk is slow to answer: nothing more may arrive before it does.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.readline(), 0.01)
            reply = "200 result=1 (L1)" if commands[-1] == LINKEDID_GET else "200 result=1"
            writer.write(reply.encode() + b"\n")
            await writer.drain()
    finally:
        writer.close()
        await writer.wait_closed()
    assert commands[0] == LINKEDID_GET
    assert len(commands) == 1 + len(SET_ORDER)
    assert counted(server) == {"resolved": 1}


@pytest.mark.parametrize("recorder", [MemoryRecorder(error=RuntimeError("database down"))])
async def test_recorder_error_sets_the_error_variables(
    server: AgiServer, recorder: MemoryRecorder
) -> None:
    session = await play(server)
    assert session.sets == ERROR_SETS
    assert counted(server) == {"error": 1}


@pytest.mark.parametrize("recorder", [MemoryRecorder(delay_s=30)])
async def test_recorder_slower_than_the_budget_sets_the_error_variables(
    server: AgiServer, recorder: MemoryRecorder
) -> None:
    session = await play(server)  # within play()'s 3 s, far below the recorder's 30 s
    assert session.sets == ERROR_SETS
    assert recorder.cancelled  # not left running after the dialogue
    assert counted(server) == {"budget_exceeded": 1}


async def test_stop_cancels_dialogues_in_progress() -> None:
    recorder = MemoryRecorder(delay_s=30)
    agi = AgiServer(recorder, PBX, "7", "127.0.0.1", 0, budget_s=30, clock=lambda: NOW)
    await agi.start()
    assert agi.health
    client = asyncio.create_task(play(agi))
    try:
        await asyncio.wait_for(recorder.started.wait(), 2)
        assert agi.in_flight == 1
        await asyncio.wait_for(agi.stop(), 2)
        assert recorder.cancelled
        assert (agi.health, agi.in_flight) == (False, 0)
        assert (await client).sets == []
    finally:
        # Ours to end if an assertion failed first; gather() still lets our own cancel through.
        client.cancel()
        await asyncio.gather(client, return_exceptions=True)
        await agi.stop()

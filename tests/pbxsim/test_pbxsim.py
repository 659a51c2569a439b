"""The simulated Asterisk over real TCP, compared with the real Asterisk captures.

The normaliser reduces a stream to what a listener reads on the inbound channel: the ordered
(Event, Variable-or-Application) pairs of every event naming that channel, leaving out CEL and
Cdr (their order against channel events is not deterministic, says the fixtures' README) and
NewConnectedLine (a Local-channel artefact of the captures). Cdr, causes and statuses are
compared apart.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession

from calltracking.pbxsim import CallSpec, HangupBy, Outcome, PbxSim, SimConfig, run_load
from calltracking.pbxsim.command import add_arguments, config_from_args
from calltracking.pbxsim.control import parse_call, parse_line, start_http
from calltracking.pbxsim.messages import AmiMessage, parse_lines, parse_stream
from tests.support.fixtures import ASTERISK

FIXTURES = ASTERISK
SKIPPED_EVENTS = {"", "CEL", "Cdr", "NewConnectedLine"}
SPEED = 50.0


# -- a small AMI client ----------------------------------------------------------------------------
class Ami:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.banner = ""

    @classmethod
    async def connect(cls, port: int) -> Ami:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        ami = cls(reader, writer)
        ami.banner = (await asyncio.wait_for(reader.readline(), 5)).decode()
        return ami

    async def send(self, **headers: str) -> None:
        text = "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        self.writer.write(text.encode())
        await self.writer.drain()

    async def read(self) -> AmiMessage:
        data = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 5.0)
        return parse_lines(data.decode().split("\r\n"))

    async def until_reply(self, action_id: str) -> list[AmiMessage]:
        """Everything up to and including the reply with this ActionID."""
        seen = []
        while True:
            message = await self.read()
            seen.append(message)
            if message.has("Response") and message.get("ActionID") == action_id:
                return seen

    async def login(self, events: str = "on", secret: str = "calltracking") -> AmiMessage:
        await self.send(Action="Login", ActionID="login", Username="calltracking", Secret=secret,
                        Events=events)  # fmt: skip
        return await self.read()

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[PbxSim]:
    sim = PbxSim(SimConfig(port=0, speed=SPEED, monitor_dir=tmp_path / "monitor"))
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def ami(sim: PbxSim) -> AsyncIterator[Ami]:
    client = await Ami.connect(sim.ami_port)
    reply = await client.login()
    assert reply.get("Message") == "Authentication accepted"
    yield client
    await client.close()


# -- the normaliser ------------------------------------------------------------------------------
def inbound_channel(messages: list[AmiMessage]) -> str:
    for m in messages:
        name = m.get("Channel")
        if m.event == "Newchannel" and m.get("Context") == "from-trunk" and not name.endswith(";1"):
            return name
    raise AssertionError("no inbound channel")


def inbound_sequence(messages: list[AmiMessage]) -> list[tuple[str, str]]:
    chan = inbound_channel(messages)
    return [
        (m.event, m.get("Variable") or m.get("Application"))
        for m in messages
        if m.get("Channel") == chan and m.event not in SKIPPED_EVENTS and not m.has("ActionID")
    ]


def key_facts(messages: list[AmiMessage]) -> dict[str, Any]:
    chan = inbound_channel(messages)
    mine = [m for m in messages if m.get("Channel") == chan and not m.has("ActionID")]
    uid = mine[0].get("Uniqueid")

    def values(event: str, header: str) -> list[str]:
        return [m.get(header) for m in mine if m.event == event]

    varsets = {m.get("Variable"): m.get("Value") for m in mine if m.event == "VarSet"}
    cdrs = [m for m in messages if m.event == "Cdr" and m.get("UniqueID") == uid]
    return {
        "dial_status": values("DialEnd", "DialStatus"),
        "hangup_request": values("HangupRequest", "Cause"),
        "hangup": values("Hangup", "Cause"),
        "caller": values("NewCallerid", "CallerIDNum")[:1],
        "agistatus": varsets.get("AGISTATUS"),
        "source": varsets.get("CALLTRACKING_SOURCE"),
        "recording": Path(varsets.get("MIXMONITOR_FILENAME", "")).name == f"{uid}.wav",
        "did": varsets.get("__CT_DID"),
        "cdr": [
            (
                c.get("Disposition"),
                c.get("LastApplication"),
                c.get("Source"),
                c.get("UserField"),
                c.get("RecordingFile")
                == (f"{uid}.wav" if varsets.get("MIXMONITOR_FILENAME") else ""),
            )
            for c in cdrs
        ],
    }


def fixture(name: str) -> list[AmiMessage]:
    return parse_stream((FIXTURES / name).read_bytes())


async def run_call(sim: PbxSim, ami: Ami, spec: CallSpec) -> list[AmiMessage]:
    placed = await sim.place_call(spec)
    await asyncio.wait_for(placed.finished, 10)
    await ami.send(Action="Ping", ActionID="sync")
    return await ami.until_reply("sync")


CASES = [
    ("ami_answered_call.txt", CallSpec("74951110001", "+79161234567", source="yandex/cpc")),
    ("ami_no_answer.txt",
     CallSpec("74951110002", "79031112233", Outcome.MISSED, source="google/cpc")),
    ("ami_busy.txt", CallSpec("74951110003", "+79265554433", Outcome.BUSY, source="avito/listing")),
    ("ami_caller_hangs_up_during_agi.txt",
     CallSpec("74951110009", "+79161234567", Outcome.HANGUP_DURING_AGI, source="telegram/channel")),
    ("ami_anonymous_caller.txt", CallSpec("74951110001", "anonymous", source="yandex/cpc")),
    ("ami_no_callerid.txt", CallSpec("74951110001", None, source="yandex/cpc")),
    ("ami_unknown_did.txt", CallSpec("74959999999", "+79161234567")),
]  # fmt: skip


@pytest.mark.parametrize(("name", "spec"), CASES, ids=[c[0] for c in CASES])
async def test_call_matches_the_capture(sim: PbxSim, ami: Ami, name: str, spec: CallSpec) -> None:
    real = fixture(name)
    simulated = await run_call(sim, ami, spec)
    assert inbound_sequence(simulated) == inbound_sequence(real)
    assert key_facts(simulated) == key_facts(real)


async def test_agi_down_matches_the_capture(tmp_path: Path) -> None:
    closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    sim = PbxSim(SimConfig(port=0, speed=SPEED, agi=("127.0.0.1", port)))
    await sim.start()
    try:
        client = await Ami.connect(sim.ami_port)
        await client.login()
        simulated = await run_call(sim, client, CallSpec("74951110001", "+79261112233"))
        await client.close()
    finally:
        await sim.stop()
    real = fixture("ami_agi_down.txt")
    assert inbound_sequence(simulated) == inbound_sequence(real)
    assert key_facts(simulated) == key_facts(real)
    assert not [m for m in simulated if m.event.startswith("AGIExec")]


async def test_production_names_and_linkedid(sim: PbxSim, ami: Ami) -> None:
    simulated = await run_call(sim, ami, CallSpec("74951110001", "+79161234567"))
    chan = inbound_channel(simulated)
    assert chan.startswith("PJSIP/trunk-")
    assert len(chan.rsplit("-", 1)[1]) == 8
    linked = {m.get("Linkedid") for m in simulated if m.has("Linkedid")}
    uid = next(m.get("Uniqueid") for m in simulated if m.get("Channel") == chan)
    assert linked == {uid}
    epoch, seq = uid.split(".")
    assert epoch.isdigit()
    assert seq.isdigit()


# -- logins and actions --------------------------------------------------------------------------
async def test_plain_login_ping_and_unknown_action(ami: Ami) -> None:
    assert ami.banner == "Asterisk Call Manager/11.0.0\r\n"
    booted = await ami.read()
    assert booted.event == "FullyBooted"
    await ami.send(Action="Ping", ActionID="p1")
    reply = (await ami.until_reply("p1"))[-1]
    assert reply.headers[:3] == (("Response", "Success"), ("ActionID", "p1"), ("Ping", "Pong"))
    assert float(reply.get("Timestamp")) > 0
    await ami.send(Action="Frobnicate", ActionID="x9")
    reply = (await ami.until_reply("x9"))[-1]
    assert reply.get("Response") == "Error"
    assert reply.get("Message") == "Invalid/unknown command"
    await ami.send(Action="Logoff", ActionID="bye")
    reply = (await ami.until_reply("bye"))[-1]
    assert reply.get("Response") == "Goodbye"
    assert await ami.reader.read() == b""


async def test_md5_login(sim: PbxSim) -> None:
    client = await Ami.connect(sim.ami_port)
    await client.send(Action="Challenge", ActionID="c", AuthType="MD5")
    challenge = (await client.read()).get("Challenge")
    key = hashlib.md5((challenge + "calltracking").encode()).hexdigest()
    await client.send(Action="Login", ActionID="l", AuthType="MD5", Username="calltracking",
                      Key=key, Events="on")  # fmt: skip
    reply = await client.read()
    assert (reply.get("Response"), reply.get("Message")) == ("Success", "Authentication accepted")
    assert (await client.read()).event == "FullyBooted"
    await client.close()


@pytest.mark.parametrize(("user", "secret", "security_event"), [
    ("calltracking", "wrong", "InvalidPassword"), ("nosuchuser", "x", "InvalidAccountID"),
])  # fmt: skip
async def test_failed_login_closes_the_socket(
    sim: PbxSim, ami: Ami, user: str, secret: str, security_event: str
) -> None:
    client = await Ami.connect(sim.ami_port)
    await client.send(Action="Login", ActionID="bad", Username=user, Secret=secret)
    data = await asyncio.wait_for(client.reader.read(), 5)
    assert data == b"Response: Error\r\nActionID: bad\r\nMessage: Authentication failed\r\n\r\n"
    await client.close()
    await ami.send(Action="Ping", ActionID="s")
    seen = [m.event for m in await ami.until_reply("s")]
    assert security_event in seen


async def test_events_off_sends_replies_only(sim: PbxSim) -> None:
    client = await Ami.connect(sim.ami_port)
    assert (await client.login(events="off")).get("Response") == "Success"
    placed = await sim.place_call(CallSpec("74951110001", "+79161234567"))
    await placed.finished
    await client.send(Action="Ping", ActionID="s")
    seen = await client.until_reply("s")
    assert [m.get("Response") for m in seen] == ["Success"]
    await client.close()


async def test_several_clients_each_get_the_events(sim: PbxSim) -> None:
    clients = [await Ami.connect(sim.ami_port) for _ in range(3)]
    for c in clients:
        await c.login()
    await sim.place_call(CallSpec("74951110001", "+79161234567"))
    for c in clients:
        seen: list[AmiMessage] = []
        while not any(m.event == "Newchannel" for m in seen):
            seen.append(await c.read())
        await c.close()


async def test_core_show_channels_and_getvar_during_a_call(sim: PbxSim, ami: Ami) -> None:
    placed = await sim.place_call(
        CallSpec("74951110001", "+79161234567", talk_s=100.0, source="yandex/cpc")
    )
    while (await ami.read()).event != "BridgeEnter":  # the call is answered and bridged
        pass
    await ami.send(Action="CoreShowChannels", ActionID="csc")
    listing = await ami.until_reply("csc")
    while listing[-1].event != "CoreShowChannelsComplete":
        listing.append(await ami.read())
    rows = [m for m in listing if m.event == "CoreShowChannel"]
    inbound = [r for r in rows if r.get("Channel") == placed.channel]
    assert len(inbound) == 1
    assert inbound[0].get("Linkedid") == placed.linkedid
    assert inbound[0].get("Application") == "Dial"
    assert inbound[0].get("BridgeId")
    assert "Privilege" not in dict(inbound[0].headers)
    assert listing[-1].get("ListItems") == str(len(rows)) == "2"
    await ami.send(Action="Getvar", ActionID="g", Channel=placed.channel,
                   Variable="MIXMONITOR_FILENAME")  # fmt: skip
    reply = (await ami.until_reply("g"))[-1]
    assert reply.get("Value").endswith(f"/{placed.uniqueid}.wav")


async def _listing(ami: Ami) -> list[AmiMessage]:
    await ami.send(Action="CoreShowChannels", ActionID="csc")
    listing = await ami.until_reply("csc")
    while listing[-1].event != "CoreShowChannelsComplete":
        listing.append(await ami.read())
    return [m for m in listing if m.event == "CoreShowChannel"]


async def test_shipped_dialplan_shape_moves_the_call_on_and_getvar_reads_its_did() -> None:
    sim = PbxSim(SimConfig(port=0, speed=SPEED, route_context="operators"))
    await sim.start()
    ami = await Ami.connect(sim.ami_port)
    try:
        await ami.send(Action="Login", ActionID="l", Username="calltracking",
                       Secret="calltracking")  # fmt: skip
        await ami.until_reply("l")
        placed = await sim.place_call(CallSpec("74951110001", "+79161234567", talk_s=100.0))
        contexts = []
        while (message := await ami.read()).event != "BridgeEnter":
            if message.event == "Newexten" and message.get("Channel") == placed.channel:
                contexts.append(message.get("Context"))
        assert contexts[0] == "from-trunk" and contexts[-1] == "operators"
        assert "calltracking-default-route" in contexts
        rows = await _listing(ami)
        inbound = next(r for r in rows if r.get("Channel") == placed.channel)
        assert (inbound.get("Context"), inbound.get("Uniqueid"), inbound.get("Linkedid")) == (
            "operators", placed.uniqueid, placed.linkedid,
        )  # fmt: skip
        assert inbound.get("ChannelState") == "6" and inbound.get("BridgeId")
        await ami.send(Action="Getvar", ActionID="g", Channel=placed.channel,
                       Variable="CALLTRACKING_DID")  # fmt: skip
        assert (await ami.until_reply("g"))[-1].get("Value") == "74951110001"
        await ami.send(Action="Getvar", ActionID="h", Channel="PJSIP/gone-00000099",
                       Variable="CALLTRACKING_DID")  # fmt: skip
        assert (await ami.until_reply("h"))[-1].get("Message") == "No such channel"
    finally:
        await ami.close()
        await sim.stop()


async def test_timestampevents_and_restricted_read_rights() -> None:
    sim = PbxSim(SimConfig(port=0, speed=SPEED, timestampevents=True, read="call,cdr"))
    await sim.start()
    ami = await Ami.connect(sim.ami_port)
    try:
        await ami.send(Action="Login", ActionID="l", Username="calltracking",
                       Secret="calltracking")  # fmt: skip
        await ami.until_reply("l")
        placed = await sim.place_call(CallSpec("74951110001", "+79161234567", talk_s=0.5))
        seen: list[AmiMessage] = []
        while not (
            seen and seen[-1].event == "Hangup" and seen[-1].get("Channel") == placed.channel
        ):
            seen.append(await ami.read())
        await placed.finished
    finally:
        await ami.close()
        await sim.stop()
    events = {m.event for m in seen}
    assert {"Newchannel", "DialBegin", "BridgeEnter", "Hangup"} <= events
    assert not events & {"Newexten", "VarSet", "AGIExecStart", "AGIExecEnd"}  # no dialplan, agi
    for m in seen:
        keys = [k for k, _ in m.headers]
        assert keys[1:3] == ["Privilege", "Timestamp"], m
    stamps = [float(m.get("Timestamp")) for m in seen]
    assert stamps == sorted(stamps)


async def test_dropping_ami_sessions_cuts_every_client_like_a_network_loss(sim: PbxSim) -> None:
    clients = [await Ami.connect(sim.ami_port) for _ in range(2)]
    for n, c in enumerate(clients):
        await c.send(Action="Login", ActionID=f"l{n}", Username="calltracking",
                     Secret="calltracking")  # fmt: skip
        await c.until_reply(f"l{n}")
    assert sim.ami_logins == 2
    assert sim.drop_ami_sessions() == 2
    for c in clients:
        assert await _read_until_cut(c)
        await c.close()


async def _read_until_cut(client: Ami) -> bool:
    """Read whatever was in flight; True once the connection is cut."""
    try:
        while True:
            await client.read()
    except (asyncio.IncompleteReadError, ConnectionError):
        return True


# -- FastAGI -------------------------------------------------------------------------------------
class TinyFastAgi:
    """Reads the env block, asks for the Linkedid, sets variables, closes (like the tracker)."""

    def __init__(self, record: str = "1") -> None:
        self.env_lines: list[str] = []
        self.replies: list[str] = []
        self.after_close: list[str] = []
        self.record = record

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (line := (await reader.readline()).decode()) not in ("\n", ""):
            self.env_lines.append(line)
        for command in ('GET FULL VARIABLE "${CHANNEL(linkedid)}"', "GET VARIABLE CT_DID",
                        'SET VARIABLE CALLTRACKING_KIND "dynamic"',
                        'SET VARIABLE CALLTRACKING_ROUTE "sales@operators"',
                        f'SET VARIABLE CALLTRACKING_RECORD "{self.record}"'):  # fmt: skip
            writer.write(command.encode() + b"\n")
            self.replies.append((await reader.readline()).decode())
        writer.write_eof()
        self.after_close.append((await reader.read()).decode())
        writer.close()


async def test_fastagi_dialogue_has_the_capture_shape(tmp_path: Path) -> None:
    agi = TinyFastAgi(record="0")
    server = await asyncio.start_server(agi.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sim = PbxSim(SimConfig(port=0, speed=SPEED, agi=("127.0.0.1", port), monitor_dir=tmp_path))
    await sim.start()
    try:
        client = await Ami.connect(sim.ami_port)
        await client.login()
        spec = CallSpec("74951110001", "+79161234567")
        placed = await sim.place_call(spec)
        result = await asyncio.wait_for(placed.finished, 10)
        await client.send(Action="Ping", ActionID="sync")
        events = await client.until_reply("sync")
        await client.close()
    finally:
        await sim.stop()
        server.close()
        await server.wait_closed()
    captured = (FIXTURES / "fastagi" / "fastagi_answered_call.asterisk_to_server.txt").read_text()
    real_keys = [line.split(":")[0] for line in captured.split("\n\n")[0].splitlines()]
    assert [line.split(":")[0] for line in agi.env_lines][:-1] == real_keys[:-2]
    env = dict(line.rstrip("\n").split(": ", 1) for line in agi.env_lines if ": " in line)
    assert env["agi_network_script"] == "calltracking"
    assert env["agi_arg_1"] == env["agi_extension"] == "74951110001"
    assert env["agi_uniqueid"] == placed.uniqueid
    assert env["agi_callerid"] == "+79161234567"
    assert agi.replies == [f"200 result=1 ({placed.linkedid})\n", "200 result=1 (74951110001)\n",
                           "200 result=1\n", "200 result=1\n", "200 result=1\n"]  # fmt: skip
    assert agi.after_close == ["HANGUP\n"]
    assert result.agi_status == "SUCCESS"
    assert result.agi_variables["CALLTRACKING_KIND"] == "dynamic"
    assert placed.as_json()["agi_variables"] == result.agi_variables
    names = [m.event for m in events if m.get("Channel") == placed.channel]
    assert names.count("AGIExecStart") == names.count("AGIExecEnd") == 5
    assert "MixMonitorStart" not in names
    assert result.recording is None
    dial = next(m for m in events if m.event == "DialBegin")
    assert dial.get("DialString") == "sales"
    assert dial.get("DestChannel").startswith("PJSIP/sales-")


# -- recordings ----------------------------------------------------------------------------------
async def test_recordings(sim: PbxSim, tmp_path: Path) -> None:
    answered = await sim.place_call(CallSpec("74951110001", "+79161234567", talk_s=3.0))
    missed = await sim.place_call(CallSpec("74951110002", "+79161234567", Outcome.MISSED))
    a, m = await asyncio.wait_for(asyncio.gather(answered.finished, missed.finished), 10)
    assert a.recording is not None
    assert m.recording is not None
    assert m.recording.stat().st_size == 44
    reference = FIXTURES / "recording_example_unanswered_empty.wav"
    assert m.recording.read_bytes() == reference.read_bytes()
    with wave.open(str(a.recording)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
        assert abs(wav.getnframes() / 8000 - 3.0) < 0.05


# -- control -------------------------------------------------------------------------------------
def test_text_specs() -> None:
    assert parse_call("74951110001") == CallSpec("74951110001")
    assert parse_call("74951110001:-:busy:5") == CallSpec(
        "74951110001", None, Outcome.BUSY, talk_s=5.0
    )
    assert parse_line("call 74951110003 +79161234567 missed") == CallSpec(
        "74951110003", "+79161234567", Outcome.MISSED
    )
    assert parse_line("  # comment") is None
    with pytest.raises(ValueError):
        parse_call("74951110001:x:exploded")


async def test_http_control_places_a_call(sim: PbxSim, unused_tcp_port: int) -> None:
    runner = await start_http(sim, "127.0.0.1", unused_tcp_port)
    base = f"http://127.0.0.1:{unused_tcp_port}"
    try:
        async with ClientSession() as http:
            body = {"did": "74951110001", "caller": "+79161234567", "outcome": "busy"}
            async with http.post(f"{base}/calls", data=json.dumps(body)) as resp:
                assert resp.status == 202
                ids = await resp.json()
            await sim.calls[ids["linkedid"]].finished
            async with http.get(f"{base}/calls/{ids['linkedid']}") as resp:
                state = await resp.json()
            assert state["state"] == "ended"
            assert state["uniqueid"] == ids["uniqueid"]
            assert state["agi_status"] == "SUCCESS"
            assert state["outcome"] == "busy"
            async with http.post(f"{base}/calls", json={"outcome": "answered"}) as resp:
                assert resp.status == 422
    finally:
        await runner.cleanup()


async def test_load_profile_places_n_calls(sim: PbxSim) -> None:
    placed = await asyncio.wait_for(
        run_load(sim, 20, 1.0, ["74951110001", "74951110002"], talk_s=2.0, seed=7), 5
    )
    assert len(placed) == 20
    results = await asyncio.wait_for(asyncio.gather(*(p.finished for p in placed)), 10)
    assert {r.linkedid for r in results} == {p.linkedid for p in placed}
    assert len(sim.registry) == 0


@pytest.mark.parametrize(("spec", "facts"), [
    (CallSpec("74951110001", "+79161234567", Outcome.FAILED),
     {"dial_status": ["CONGESTION"], "hangup_request": [], "hangup": ["16"],
      "cdr": ["CONGESTION", "NO ANSWER"]}),
    (CallSpec("74951110001", "+79161234567", ring_s=4.0, hangup_by=HangupBy.CALLER),
     {"dial_status": ["ANSWER"], "hangup_request": ["16"], "hangup": ["16"], "cdr": ["ANSWERED"]}),
])  # fmt: skip
async def test_outcomes_without_a_capture(
    sim: PbxSim, ami: Ami, spec: CallSpec, facts: dict[str, object]
) -> None:
    simulated = await run_call(sim, ami, spec)
    found = key_facts(simulated)
    found["cdr"] = [c[0] for c in found["cdr"]]
    assert {k: found[k] for k in facts} == facts
    names = [m.event for m in simulated]
    assert names.count("Newchannel") == names.count("Hangup") == 2


async def test_caller_hangs_up_during_a_real_fastagi_dialogue() -> None:
    agi = TinyFastAgi()
    server = await asyncio.start_server(agi.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sim = PbxSim(SimConfig(port=0, speed=SPEED, agi=("127.0.0.1", port)))
    await sim.start()
    try:
        client = await Ami.connect(sim.ami_port)
        await client.login()
        spec = CallSpec("74951110009", "+79161234567", Outcome.HANGUP_DURING_AGI)
        simulated = await run_call(sim, client, spec)
        await client.close()
    finally:
        await sim.stop()
        server.close()
        await server.wait_closed()
    # Asterisk tells the script at once, and still answers GET/SET on the dead channel.
    assert agi.replies[0] == "HANGUP\n"
    assert "".join(agi.replies[1:]).startswith("200 result=1 (")
    facts = key_facts(simulated)
    assert facts["agistatus"] == "HANGUP"
    assert facts["hangup_request"] == facts["hangup"] == ["19"]
    assert [c[0] for c in facts["cdr"]] == ["NO ANSWER"]
    assert not [m for m in simulated if m.event == "DialBegin"]


def test_cli_flags_for_the_shipped_dialplan_shape_timestamps_and_read_rights() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from_args(
        parser.parse_args(["--route-context", "operators", "--timestampevents", "--read", "call"])
    )
    assert (config.route_context, config.timestampevents, config.read) == (
        "operators",
        True,
        "call",
    )
    default = config_from_args(parser.parse_args([]))
    assert (default.route_context, default.timestampevents, default.read) == ("", False, "all")

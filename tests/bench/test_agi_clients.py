"""bench.agi_bench's two Asterisk sides (`--client protocol` and `--client streams`) send the same
bytes, answer each command only after it came, and read the same answer from the dialogue; the
`dialogue` baseline server runs the whole dialogue."""

from __future__ import annotations

import asyncio
import random

import pytest

from agi.server import AgiServer
from bench.agi_bench import CLIENTS, DID
from bench.agi_servers import PBX_ID, InstantStarter

COMMANDS = [
    b'GET FULL VARIABLE "${CHANNEL(linkedid)}"\n',
    b'SET VARIABLE CALLTRACKING_SITE "s1"\n',
    b'SET VARIABLE CALLTRACKING_KIND "dynamic"\n',
]


async def _scripted(
    received: asyncio.Queue[bytes], replies: list[bytes], bare: bool
) -> asyncio.Server:
    """A FastAGI server that asks COMMANDS one by one (each after the previous reply), then
    half-closes and keeps what the peer sends until its EOF (Asterisk's HANGUP)."""

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen = await reader.readuntil(b"\n\n")
        if bare:
            writer.write(b"200 result=1\n")
        else:
            for command in COMMANDS:
                writer.write(command)
                reply = await reader.readline()
                replies.append(reply)
                seen += reply
        writer.write_eof()
        seen += await reader.read()
        received.put_nowait(seen)
        writer.close()

    return await asyncio.start_server(session, "127.0.0.1", 0)


@pytest.mark.parametrize("bare", [False, True])
async def test_both_clients_send_the_same_bytes_and_read_the_same_answer(bare: bool) -> None:
    sent: dict[str, bytes] = {}
    answers: dict[str, str] = {}
    received: asyncio.Queue[bytes] = asyncio.Queue()
    replies: list[bytes] = []
    server = await _scripted(received, replies, bare)
    async with server:
        port = server.sockets[0].getsockname()[1]
        for name, talks in CLIENTS.items():
            replies.clear()
            random.seed(7)  # the env block's agi_threadid is drawn at random
            answers[name] = await asyncio.wait_for(
                talks[not bare](port, "1795592516.7", "+74951110001"), 10
            )
            # The session ends when it has read the client's EOF (after HANGUP).
            sent[name] = await asyncio.wait_for(received.get(), 10)
            assert received.empty()
            if not bare:
                assert replies == [b"200 result=1 (1795592516.7)\n"] + [b"200 result=1\n"] * 2
    assert sent["protocol"] == sent["streams"]
    assert answers["protocol"] == answers["streams"] == ("bare" if bare else "dynamic")
    assert sent["protocol"].endswith(b"\n\n" if bare else b"HANGUP\n")


async def test_the_dialogue_server_runs_the_whole_dialogue_for_both_clients() -> None:
    # bench.agi_servers' `dialogue` role: the tracker's FastAGI server with call starts
    # answered at once. Each client must get through the same ten round trips as against the
    # tracker and read `dynamic`; an error or a missing variable would read otherwise.
    server = AgiServer(InstantStarter(), PBX_ID, "7", "127.0.0.1", 0)
    await server.start()
    try:
        for n, talks in enumerate(CLIENTS.values()):
            answer = await asyncio.wait_for(talks[1](server.port, f"1795592516.{n}", DID), 10)
            assert answer == "dynamic"
    finally:
        await server.stop()
    assert server.counters()["resolved"] == len(CLIENTS)

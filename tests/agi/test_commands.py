"""A dialogue's commands run from the connection's callbacks (AgiChannel.commands over
AgiConnection.exchange) as they did one `readuntil` at a time: for any replies in any chunks,
the same commands written, the same replies, `HANGUP` marks and errors; each command written
only once the reply to the one before is in, and the first reply that is not `200` ends them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agi.channel import AgiChannel, Commands
from agi.connection import AgiConnection
from agi.protocol import (
    HANGUP_LINE,
    USAGE_CONTINUES,
    AgiError,
    PeerClosed,
    ProtocolError,
    Reply,
    parse_reply,
)
from tests.agi import settled
from tests.agi.test_connection import LIMIT, _Transport

COMMANDS = [f"SET VARIABLE V{n} {n}" for n in range(4)]


async def _one_at_a_time(
    reader: asyncio.StreamReader, lines: list[str], written: list[bytes]
) -> Any:
    """The channel as it was before exchanges: write, then `readuntil` until the reply."""

    async def read_line() -> str:
        try:
            raw = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            raise PeerClosed("closed") from None
        except asyncio.LimitOverrunError:
            raise ProtocolError("too long") from None
        return raw[:-1].decode("utf-8", "replace").rstrip("\r")

    replies: list[Reply] = []
    hung_up = False
    try:
        for line in lines:
            written.append(line.encode() + b"\n")
            while True:
                text = await read_line()
                if text == HANGUP_LINE:
                    hung_up = True
                    continue
                if text.startswith(USAGE_CONTINUES):
                    while not (await read_line()).startswith("520 "):
                        pass
                    reply = parse_reply(text[:3] + " " + text[4:])
                else:
                    reply = parse_reply(text)
                break
            replies.append(reply)
            if not reply.ok:
                break
    except AgiError as exc:
        return type(exc).__name__, hung_up
    return replies, hung_up


async def _exchanged(channel: AgiChannel, lines: list[str]) -> Any:
    try:
        replies = await channel.commands(lines)
    except AgiError as exc:
        return type(exc).__name__, channel.hung_up
    return replies, channel.hung_up


_replies = st.lists(
    st.sampled_from(
        [
            b"200 result=1\n",
            b"200 result=0\n",
            b"200 result=1 (L1)\n",
            b"HANGUP\n",
            b"511 Command Not Permitted on a dead channel or intercept routine\n",
            b"510 Invalid or unknown command\n",
            b"520-Invalid command syntax.  Proper usage follows:\nUsage: x\n520 End of usage.\n",
            b"hello\n",
            b"x" * 70 + b"\n",
        ]
    ),
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(_replies, st.data(), st.integers(1, 4), st.booleans())
def test_an_exchange_reads_as_one_readuntil_at_a_time(
    replies: list[bytes], data: st.DataObject, count: int, eof: bool
) -> None:
    stream = b"".join(replies)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    lines = COMMANDS[:count]

    async def both() -> tuple[Any, Any, list[bytes], list[bytes]]:
        reader = asyncio.StreamReader(limit=LIMIT)
        written: list[bytes] = []
        connection = AgiConnection(LIMIT, lambda _: None)
        transport = _Transport()
        connection.connection_made(transport)
        ours = asyncio.create_task(_exchanged(AgiChannel(connection), lines))
        theirs = asyncio.create_task(_one_at_a_time(reader, lines, written))
        ours_seen, theirs_seen = [], []  # what each had written when the next bytes came
        for chunk in [*chunks, b""]:
            for _ in range(10):  # each takes what was fed; then it ends or waits for more
                await asyncio.sleep(0)
            ours_seen.append(transport.written)
            theirs_seen.append(b"".join(written))
            reader.feed_data(chunk)
            connection.data_received(chunk)
        if eof:
            reader.feed_eof()
            connection.eof_received()
        results = await settled([ours, theirs], "waiting")
        ours_seen.append(transport.written)
        theirs_seen.append(b"".join(written))
        return results[0], results[1], ours_seen, theirs_seen

    ours, theirs, ours_written, theirs_written = asyncio.run(both())
    assert ours == theirs
    assert ours_written == theirs_written  # no command sent before the reply to the one before


def test_each_command_waits_for_the_reply_before_it() -> None:
    commands = Commands(COMMANDS[:3])
    assert commands.first == b"SET VARIABLE V0 0\n"
    assert commands.line(b"HANGUP\n") is None  # not a reply: nothing more to send yet
    assert commands.line(b"200 result=1\n") == b"SET VARIABLE V1 1\n"
    assert commands.line(b"520-Invalid command syntax.\n") is None
    assert commands.line(b"Usage: SET VARIABLE\n") is None
    assert not commands.done
    assert commands.line(b"520 End of proper usage.\n") is None  # a refusal ends them
    assert (commands.done, commands.hung_up) == (True, True)
    assert [reply.code for reply in commands.replies] == [200, 520]


@pytest.mark.parametrize("lines", [[]])
def test_an_exchange_needs_a_command(lines: list[str]) -> None:
    with pytest.raises(ValueError):
        Commands(lines)

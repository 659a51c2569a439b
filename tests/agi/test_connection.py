"""agi/connection.py reads as the StreamReader it replaced: the same chunks, the same errors for
any bytes however they arrive (as bytes or into its read buffer); a flooding peer is paused, not
buffered without end; a write after the connection was lost fails."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agi.connection import KERNEL_WAIT_READABLE, AgiConnection
from tests.agi import settled

LIMIT = 64


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.paused = False
        self.closed = False
        self.written = b""

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def write(self, data: Any) -> None:
        self.written += bytes(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 4573) if name == "peername" else default


def _paused(transport: _Transport) -> bool:
    return transport.paused


def _connection() -> tuple[AgiConnection, _Transport]:
    connection = AgiConnection(LIMIT, lambda _: None)
    transport = _Transport()
    connection.connection_made(transport)
    return connection, transport


async def _read_all(reader: Any, separators: list[bytes]) -> list[object]:
    """What each readuntil gave: the bytes, or the error's type and its details."""
    out: list[object] = []
    for separator in separators:
        try:
            out.append(await reader.readuntil(separator))
        except asyncio.IncompleteReadError as exc:
            out.append(("incomplete", exc.partial))
            return out
        except asyncio.LimitOverrunError as exc:
            out.append(("overrun", exc.consumed))
            return out
    return out


_chunks = st.lists(
    st.binary(max_size=40) | st.sampled_from([b"\n", b"\n\n", b"200 result=1\n", b"x" * 70]),
    max_size=8,
)
_separators = st.lists(st.sampled_from([b"\n", b"\n\n"]), min_size=1, max_size=6)


def _feed(connection: AgiConnection, chunk: bytes, buffered: bool) -> None:
    """As the transport hands a read over: into `get_buffer`'s memory, or as bytes."""
    if not buffered:
        connection.data_received(chunk)
        return
    memory = connection.get_buffer(-1)
    memory[: len(chunk)] = chunk
    connection.buffer_updated(len(chunk))


@settings(max_examples=300, deadline=None)
@given(_chunks, _separators, st.booleans(), st.booleans())
def test_reads_as_a_stream_reader_does(
    chunks: list[bytes], separators: list[bytes], eof: bool, buffered: bool
) -> None:
    async def both() -> tuple[list[object], list[object]]:
        stream = asyncio.StreamReader(limit=LIMIT)
        connection, _ = _connection()
        ours = asyncio.create_task(_read_all(connection, separators))
        theirs = asyncio.create_task(_read_all(stream, separators))
        for chunk in chunks:
            await asyncio.sleep(0)  # the readers may be waiting in between
            stream.feed_data(chunk)
            _feed(connection, chunk, buffered)
        if eof:
            stream.feed_eof()
            connection.eof_received()
        waiting: list[object] = ["waiting"]
        results = await settled([ours, theirs], waiting)
        return results[0], results[1]

    ours, theirs = asyncio.run(both())
    assert ours == theirs


async def test_a_flooding_peer_is_paused_until_the_buffer_is_read() -> None:
    connection, transport = _connection()
    connection.data_received(b"a" * LIMIT + b"\n")
    assert not _paused(transport)
    connection.data_received(b"b" * LIMIT + b"\n")
    assert _paused(transport)  # more than twice the limit waits unread
    assert await connection.readuntil(b"\n") == b"a" * LIMIT + b"\n"
    assert _paused(transport)  # still more than the limit unread
    assert await connection.readuntil(b"\n") == b"b" * LIMIT + b"\n"
    assert not _paused(transport)


async def test_a_lost_connection_fails_the_reader_and_the_writer() -> None:
    connection, transport = _connection()
    reading = asyncio.create_task(connection.readuntil(b"\n"))
    await asyncio.sleep(0)
    connection.data_received(b"200 resu")
    connection.connection_lost(ConnectionResetError("reset by peer"))
    with pytest.raises(ConnectionResetError):
        await reading
    with pytest.raises(ConnectionResetError):
        connection.write(b"SET VARIABLE X 1\n")
    assert transport.written == b""
    await asyncio.wait_for(connection.wait_closed(), 1)


async def test_a_paused_writer_waits_for_resume() -> None:
    connection, transport = _connection()
    connection.pause_writing()
    connection.write(b"SET VARIABLE X 1\n")
    assert connection.must_drain
    draining = asyncio.create_task(connection.drain())
    await asyncio.sleep(0)
    assert not draining.done()
    connection.resume_writing()
    await asyncio.wait_for(draining, 1)
    assert transport.written == b"SET VARIABLE X 1\n"


@pytest.mark.skipif(not KERNEL_WAIT_READABLE, reason="read from Linux's TCP_INFO")
async def test_it_tells_how_long_the_bytes_read_waited_in_the_kernel() -> None:
    accepted: asyncio.Queue[AgiConnection] = asyncio.Queue()
    server = await asyncio.get_running_loop().create_server(
        lambda: AgiConnection(LIMIT, accepted.put_nowait), "127.0.0.1", 0
    )
    try:
        port = server.sockets[0].getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as peer:
            connection = await asyncio.wait_for(accepted.get(), 5)
            peer.sendall(b"agi_network: yes\n")
            time.sleep(0.6)  # noqa: ASYNC251  # the loop is busy elsewhere while they wait
            assert await asyncio.wait_for(connection.readuntil(b"\n"), 5) == b"agi_network: yes\n"
            waited = connection.since_data_s()
            assert waited is not None and 0.55 <= waited < 5
            peer.sendall(b"agi_request: agi://x/calltracking\n")
            await asyncio.wait_for(connection.readuntil(b"\n"), 5)
            waited = connection.since_data_s()
            assert waited is not None and waited < 0.5  # read at once this time
            connection.close()
            await asyncio.wait_for(connection.wait_closed(), 5)
    finally:
        server.close()
        await server.wait_closed()


def test_without_a_socket_the_wait_is_unknown() -> None:
    assert AgiConnection(LIMIT, lambda connection: None).since_data_s() is None

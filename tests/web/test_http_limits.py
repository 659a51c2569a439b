"""The HTTP server holds off idle, dripping and crowding clients (`calltracking serve`, web part).

Clients are real sockets from distinct loopback addresses (127.0.0.2, 127.0.0.3): Linux routes
the whole of 127/8 to the loopback interface, so one machine plays several peers.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from calltracking.config import Config
from calltracking.serve import running
from web.limits import (
    PAGE_MARGIN,
    ConnectionGate,
    HttpLimits,
    address_key,
    guard_accept_errors,
    http_limits,
)

BOT = "127.0.0.2"
OTHER = "127.0.0.3"
WS_CAP = 24


@asynccontextmanager
async def tracker(tmp_path: Path, **settings: object) -> AsyncIterator[int]:
    config = Config(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'web.db'}",
        http_port=0,
        ws_max_per_address=WS_CAP,
        **settings,  # type: ignore[arg-type]
    )
    async with running(config, ["web"]) as state:
        assert state.http_port is not None
        yield state.http_port


async def _connect(port: int, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sent before it closed the connection."""
    try:
        return await reader.read()
    except ConnectionError:
        return b""


class Peer(asyncio.Protocol):
    """A raw client socket that keeps what it received, even when its own writes then fail."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += data

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def _open(port: int) -> Peer:
    _, peer = await asyncio.get_running_loop().create_connection(
        Peer, "127.0.0.1", port, local_addr=(BOT, 0)
    )
    return peer


async def _held(peer: Peer, drip: bool) -> bytes:
    """A silent client, or a slowloris dripping a request head that never ends; what it got."""
    assert peer.transport is not None
    if drip:
        peer.transport.write(b"GET /healthz HTTP/1.1\r\nHost: tracker\r\n")
    while drip and not peer.closed.done():
        peer.transport.write(b"X")
        await asyncio.wait([peer.closed], timeout=0.05)  # the client's pace; wakes on close
    await peer.closed
    return bytes(peer.received)


async def _healthz(port: int, source: str) -> int:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.get(f"http://127.0.0.1:{port}/healthz") as response,
    ):
        return response.status


async def test_silent_and_dripping_sockets_from_one_address_are_cut_off_while_healthz_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="web.limits")
    async with tracker(tmp_path, http_header_timeout_s=10.0, http_max_connections=1000) as port:
        # One after the other: 300 at once would overflow the listen backlog, and the late
        # ones would arrive after the first were already cut off.
        peers = [await _open(port) for _ in range(300)]
        bots = [asyncio.create_task(_held(peer, drip=i % 2 == 1)) for i, peer in enumerate(peers)]
        assert await _healthz(port, OTHER) == 200
        answers = await asyncio.gather(*bots)
    refused = [a for a in answers if a.startswith(b"HTTP/1.1 503")]
    cut_off = [a for a in answers if a == b""]
    assert len(refused) == 300 - (WS_CAP + PAGE_MARGIN)
    assert len(cut_off) == WS_CAP + PAGE_MARGIN  # held until the head deadline, then closed
    lines = [r.getMessage() for r in caplog.records if r.name == "web.limits"]
    assert len(lines) == 1  # one line for the flood, not one per refusal
    assert f"connection from {BOT} refused" in lines[0]


async def test_connections_beyond_the_bound_are_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="web.limits")
    async with tracker(tmp_path, http_header_timeout_s=60.0, http_max_connections=10) as port:
        held = [await _connect(port, OTHER) for _ in range(10)]
        reader, writer = await _connect(port, BOT)
        assert (await _until_closed(reader)).startswith(b"HTTP/1.1 503")
        writer.close()
        for _, w in held:
            w.close()
    [line] = [r.getMessage() for r in caplog.records if r.name == "web.limits"]
    assert "10 connections are open" in line


async def test_a_body_that_does_not_arrive_in_time_gets_408(tmp_path: Path) -> None:
    async with tracker(tmp_path, http_body_timeout_s=1.0, admin_token="admin-secret") as port:
        reader, writer = await _connect(port, OTHER)
        writer.write(
            b"POST /api/v1/accounts HTTP/1.1\r\nHost: tracker\r\nContent-Type: application/json"
            b"\r\nAuthorization: Bearer admin-secret\r\nContent-Length: 100\r\n\r\n{"
        )
        await writer.drain()
        status_line = await reader.readline()
        writer.close()
    assert status_line.startswith(b"HTTP/1.1 408")


async def test_accept_errors_are_logged_once_a_minute_not_once_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    seen: list[str] = []
    loop.set_exception_handler(lambda _loop, context: seen.append(context["message"]))
    undo = guard_accept_errors(loop)
    try:
        with caplog.at_level(logging.ERROR):
            for _ in range(1000):
                loop.call_exception_handler(
                    {
                        "message": "socket.accept() out of system resource",
                        "exception": OSError(errno.EMFILE, "Too many open files"),
                    }
                )
            loop.call_exception_handler({"message": "something else"})
    finally:
        undo()
        loop.set_exception_handler(None)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "Too many open files" in lines[0]
    assert seen == ["something else"]  # other errors reach the handler that was there


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),  # the same /64: one customer
        ("::ffff:203.0.113.7", "203.0.113.7"),
    ],
)
def test_an_ipv6_address_counts_with_its_64(host: str, key: str) -> None:
    assert address_key(host) == key


def test_the_default_bound_leaves_descriptors_for_everything_else() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    limits = http_limits(Config(ws_max_per_address=200))
    assert limits.max_per_address == 200 + PAGE_MARGIN
    assert limits.max_connections <= max(16, soft * 3 // 4)
    assert http_limits(Config(http_max_connections=50)).max_connections == 50


def test_a_trusted_proxy_is_not_held_to_the_per_address_cap() -> None:
    limits = HttpLimits(
        1.0, 1.0, max_connections=10, max_per_address=2, trusted=frozenset({"10.0.0.1"})
    )
    gate = ConnectionGate(limits, clock=lambda: 0.0)
    assert [gate.admit("10.0.0.1") for _ in range(5)] == ["10.0.0.1"] * 5
    assert [gate.admit("10.0.0.2") for _ in range(3)] == ["10.0.0.2", "10.0.0.2", None]
    gate.release("10.0.0.2")
    assert gate.admit("10.0.0.2") == "10.0.0.2"
    assert (gate.open, gate.refused) == (7, 1)

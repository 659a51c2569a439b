"""bench.ws_client speaks RFC 6455 as a browser tab does, against a real aiohttp server: the
benchmarks' figures mean something only if the lean client sends and checks what a browser
would (masked frames, the upgrade's accept key, pings answered)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import WSMsgType, web

from bench.ws_client import LeanSocket, WsClosed, connect, mask_frame


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    """An aiohttp websocket server that echoes text, pings on `ping`, closes on `bye`."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is WSMsgType.PONG:
                await ws.send_str(f"pong:{msg.data.decode()}")
            elif msg.data == "ping":
                await ws.ping(b"p1")
            elif msg.data == "bye":
                await ws.close(code=4001)
            elif msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield int(runner.addresses[0][1])
    await runner.cleanup()


async def test_text_of_every_length_class_comes_back_unchanged(echo_port: int) -> None:
    sock = await connect("127.0.0.1", echo_port, "/ws", {"Origin": "https://shop.example"})
    for text in ("", "hello", "é" * 100, "x" * 70_000):  # 7-bit, 16-bit and 64-bit lengths
        sock.send_text(text)
        assert await asyncio.wait_for(sock.receive_text(), 5) == text
    sock.close()


async def test_a_ping_is_answered_with_its_payload(echo_port: int) -> None:
    sock = await connect("127.0.0.1", echo_port, "/ws", {})
    sock.send_text("ping")
    assert await asyncio.wait_for(sock.receive_text(), 5) == "pong:p1"
    sock.close()


async def test_a_close_frame_ends_every_later_receive(echo_port: int) -> None:
    sock = await connect("127.0.0.1", echo_port, "/ws", {})
    sock.send_text("bye")
    for _ in range(2):
        with pytest.raises(WsClosed):
            await asyncio.wait_for(sock.receive_text(), 5)
    assert sock.close_code == 4001


async def test_an_endpoint_that_is_not_a_websocket_is_refused() -> None:
    async def plain(request: web.Request) -> web.Response:
        return web.Response(text="no")

    app = web.Application()
    app.router.add_get("/ws", plain)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = int(runner.addresses[0][1])
    try:
        with pytest.raises(WsClosed, match="upgrade refused"):
            await connect("127.0.0.1", port, "/ws", {})
    finally:
        await runner.cleanup()


async def test_a_wrong_accept_key_is_refused() -> None:
    done = asyncio.Event()

    async def fake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: bm90IHRoZSBrZXk=\r\n\r\n"
        )
        await writer.drain()
        await reader.read()  # until the client, refusing the key, closes
        writer.close()
        await writer.wait_closed()
        done.set()

    server = await asyncio.start_server(fake, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(WsClosed, match="Accept"):
            await connect("127.0.0.1", port, "/ws", {})
        await asyncio.wait_for(done.wait(), 5)
    finally:
        server.close()
        await server.wait_closed()


def test_client_frames_are_masked_and_unmask_to_the_payload() -> None:
    payload = bytes(range(256)) * 3
    frame = mask_frame(0x1, payload)
    assert frame[0] == 0x81 and frame[1] == 0x80 | 126
    n = int.from_bytes(frame[2:4], "big")
    key, body = frame[4:8], frame[8:]
    assert n == len(payload) == len(body)
    assert bytes(b ^ key[i % 4] for i, b in enumerate(body)) == payload


def test_the_request_carries_the_tab_headers() -> None:
    async def build() -> bytes:
        return LeanSocket("h:1", "/ws", {"X-Forwarded-For": "10.0.0.7"})._request

    request = asyncio.run(build()).decode()
    assert request.startswith("GET /ws HTTP/1.1\r\nHost: h:1\r\n")
    assert "\r\nX-Forwarded-For: 10.0.0.7\r\n" in request
    assert "Sec-WebSocket-Version: 13" in request and request.endswith("\r\n\r\n")

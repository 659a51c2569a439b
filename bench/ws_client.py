"""A lean websocket client for the benchmarks: a bare `asyncio.Protocol` that speaks just
enough RFC 6455 to be a visitor's tab, so that the load generator is not what limits a run.

Why: aiohttp's client spends 0.8-0.9 ms of CPU per socket opened (handshake, hello, first
frames), more than the bare echo server spends serving it, and the benchmarks' client and
server share two cores; with it, the echo server's rate in `bench.ws_bench` was the client's
ceiling, not the server's. This client sends what a browser sends for the same tab (the
upgrade request with `Origin`, `User-Agent` and `X-Forwarded-For`, masked text frames) and
checks what a browser checks (`101`, `Sec-WebSocket-Accept`), at a fraction of the CPU.

Scope: text frames in, masked text frames out, pings answered with pongs, a close frame or
EOF ends the socket. No extensions are offered (browsers offer permessage-deflate; the tracker
refuses it, so the frames are the same). Server frames arrive unmasked and unfragmented; a
fragmented or masked server frame is a protocol error here, as it never happens against the
servers measured.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import struct
from typing import Any

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, 1.3
HEADER_LIMIT = 16 * 1024
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


class WsClosed(ConnectionError):
    """The socket ended (close frame, EOF or a protocol error) before what was awaited."""


def mask_frame(opcode: int, payload: bytes) -> bytes:
    """One final client frame: masked, as RFC 6455 requires of clients."""
    key = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    repeated = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")
    return head + key + masked


class LeanSocket(asyncio.Protocol):
    """One client websocket: `await opened`, then `send_text` and `await receive_text()`."""

    def __init__(self, host: str, path: str, headers: dict[str, str]) -> None:
        self._key = base64.b64encode(os.urandom(16))
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {self._key.decode()}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        self._request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self._texts: asyncio.Queue[str | None] = asyncio.Queue()
        self._buffer = bytearray()
        self._upgraded = False
        self._transport: asyncio.Transport | None = None
        self.close_code: int | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        try:
            if not self._upgraded and not self._read_upgrade():
                return
            self._read_frames()
        except WsClosed as exc:
            self._end(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(WsClosed(f"connection lost ({exc})" if exc else "connection closed"))

    # -- what a tab does ---------------------------------------------------------------------

    def send_text(self, text: str) -> None:
        if self._transport is None or self._transport.is_closing():
            raise WsClosed("send on a closed socket")
        self._transport.write(mask_frame(TEXT, text.encode()))

    async def receive_text(self) -> str:
        text = await self._texts.get()
        if text is None:
            self._texts.put_nowait(None)  # every later receive ends the same way
            raise WsClosed(f"socket ended (close code {self.close_code})")
        return text

    async def receive_json(self) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(await self.receive_text())
        return frame

    def close(self) -> None:
        """A close frame (1000), then the TCP close; the server's answer is not awaited."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(mask_frame(CLOSE, struct.pack("!H", 1000)))
            self._transport.close()

    # -- parsing -----------------------------------------------------------------------------

    def _read_upgrade(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > HEADER_LIMIT:
                raise WsClosed("no end of the upgrade response")
            return False
        head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        del self._buffer[: end + 4]
        if not head[0].startswith("HTTP/1.1 101"):
            raise WsClosed(f"upgrade refused: {head[0]!r}")
        fields = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        accept = base64.b64encode(hashlib.sha1(self._key + WS_GUID).digest()).decode()
        if fields.get("sec-websocket-accept") != accept:
            raise WsClosed("wrong Sec-WebSocket-Accept")
        self._upgraded = True
        if not self.opened.done():
            self.opened.set_result(None)
        return True

    def _read_frames(self) -> None:
        buf = self._buffer
        while len(buf) >= 2:
            first, second = buf[0], buf[1]
            if second & 0x80 or not first & 0x80:
                raise WsClosed("masked or fragmented server frame")
            n, at = second & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    return
                (n,), at = struct.unpack_from("!H", buf, 2), 4
            elif n == 127:
                if len(buf) < 10:
                    return
                (n,), at = struct.unpack_from("!Q", buf, 2), 10
            if len(buf) < at + n:
                return
            payload = bytes(buf[at : at + n])
            del buf[: at + n]
            opcode = first & 0x0F
            if opcode == TEXT:
                self._texts.put_nowait(payload.decode())
            elif opcode == PING and self._transport is not None:
                self._transport.write(mask_frame(PONG, payload))
            elif opcode == CLOSE:
                self.close_code = struct.unpack("!H", payload[:2])[0] if n >= 2 else None
                raise WsClosed(f"close frame {self.close_code}")

    def _end(self, exc: WsClosed) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
        self._texts.put_nowait(None)
        if self._transport is not None:
            self._transport.close()


async def connect(host: str, port: int, path: str, headers: dict[str, str]) -> LeanSocket:
    """An open websocket to `ws://host:port/path` (raises WsClosed or OSError otherwise)."""
    loop = asyncio.get_running_loop()
    _, sock = await loop.create_connection(
        lambda: LeanSocket(f"{host}:{port}", path, headers), host, port
    )
    await sock.opened
    return sock

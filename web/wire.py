"""Several server text frames in one write to a websocket's transport (RFC 6455, section 5.2).

Why: a new visitor is sent its welcome and its first number back to back. Through aiohttp each
frame is its own `transport.write`, so its own `send` (plus two `setsockopt` calls to cork them
into one segment); a profile of `bench.ws_bench` put those syscalls among the largest items of
a new visitor's CPU. Framed here, both leave in one `send`.

Rules kept here:
- only what aiohttp itself would write: unmasked (a server never masks), final, text frames,
  with the 7-, 16- or 64-bit length RFC 6455 prescribes;
- only on a socket whose writer compresses nothing (the visitor socket refuses
  permessage-deflate) and that is neither closing nor closed; `write_texts` returns False
  without writing when it cannot tell (another aiohttp), so the caller sends them one by one;
- a transport already closing raises ConnectionResetError, as aiohttp's writer does.
Only for the first frames of a fresh socket: with nothing buffered yet there is no flow control
to wait for (later pushes go through aiohttp's writer and its drain).
"""

from __future__ import annotations

import struct

from aiohttp import web

_TEXT_FINAL = 0x81
_LEN16 = struct.Struct("!BBH")
_LEN64 = struct.Struct("!BBQ")


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked text frame carrying `payload` (UTF-8)."""
    n = len(payload)
    if n < 126:
        return bytes((_TEXT_FINAL, n)) + payload
    if n < 65536:
        return _LEN16.pack(_TEXT_FINAL, 126, n) + payload
    return _LEN64.pack(_TEXT_FINAL, 127, n) + payload


def write_texts(ws: web.WebSocketResponse, *texts: str) -> bool:
    """Write `texts` as consecutive text frames in one transport write; False when this socket
    cannot be written to that way (nothing was written then)."""
    # `_writer`, `transport` and `compress` are aiohttp's (web_ws / _websocket.writer).
    writer = getattr(ws, "_writer", None)
    transport = getattr(writer, "transport", None)
    if transport is None or getattr(writer, "compress", None) != 0 or ws.closed:
        return False
    if getattr(writer, "_closing", False) or transport.is_closing():
        raise ConnectionResetError("Cannot write to closing transport")
    transport.write(b"".join(text_frame(text.encode()) for text in texts))
    return True

"""One FastAGI connection as seen by the server: read the `agi_*` block, send commands, get replies.

Rules:
- The header block is read with `readuntil(b"\\n\\n")` under the caller's timeout: EOF before the
  blank line is PeerClosed (never a spin on `b""`, panoramisk 1.4's freeze), a block longer than
  the connection's limit is HeaderTooLarge. Only the server decides how long to wait. The
  reader is the connection (connection.py) or anything reading as a StreamReader does.
- A command is written, then lines are read until its reply: `HANGUP` lines on the way only mark
  the channel as hung up (Asterisk goes on answering GET/SET on a dead channel), a `520-` usage
  block is read to its end. EOF is PeerClosed, a garbage line is ProtocolError.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol

from agi.connection import AgiConnection
from agi.protocol import (
    HANGUP_LINE,
    USAGE_CONTINUES,
    AgiError,
    PeerClosed,
    ProtocolError,
    Reply,
    parse_env,
    parse_reply,
)

HEADER_END = b"\n\n"
LINE_END = b"\n"


class HeaderTooLarge(AgiError):
    """The `agi_*` block did not end within the connection's size limit."""


class Reads(Protocol):
    async def readuntil(self, separator: bytes) -> bytes: ...


async def read_env(reader: Reads) -> dict[str, str]:
    """The `agi_*` variables up to the blank line. Time limits are the caller's."""
    try:
        block = await reader.readuntil(HEADER_END)
    except asyncio.IncompleteReadError as exc:
        raise PeerClosed(f"closed after {len(exc.partial)} header bytes") from None
    except asyncio.LimitOverrunError as exc:
        raise HeaderTooLarge(f"no blank line within {exc.consumed} bytes") from None
    return parse_env(block[: -len(HEADER_END)])


class AgiChannel:
    """Commands and replies over one FastAGI connection (the header already read)."""

    def __init__(self, connection: AgiConnection) -> None:
        self._connection = connection
        self.hung_up = False

    async def command(self, line: str) -> Reply:
        """Send one command line and return its reply, noting any `HANGUP` on the way."""
        connection = self._connection
        try:
            connection.write(line.encode("utf-8") + LINE_END)
            if connection.must_drain:
                await connection.drain()
        except ConnectionError as exc:
            raise PeerClosed(f"write failed: {exc}") from None
        while True:
            text = await self._read_line()
            if text == HANGUP_LINE:
                self.hung_up = True
                continue
            if text.startswith(USAGE_CONTINUES):
                await self._skip_usage()
                return parse_reply(text[:3] + " " + text[4:])
            return parse_reply(text)

    async def _skip_usage(self) -> None:
        # Asterisk ends the usage text with "520 End of proper usage."
        while not (await self._read_line()).startswith("520 "):
            pass

    async def _read_line(self) -> str:
        try:
            raw = await self._connection.readuntil(LINE_END)
        except asyncio.IncompleteReadError:
            raise PeerClosed("closed while a reply was awaited") from None
        except asyncio.LimitOverrunError:
            raise ProtocolError("reply line longer than the connection's limit") from None
        except ConnectionError as exc:
            raise PeerClosed(f"read failed: {exc}") from None
        return raw[: -len(LINE_END)].decode("utf-8", "replace").rstrip("\r")


def describe(env: Mapping[str, str]) -> str:
    """The channel and unique id of a session, for log lines (no caller number)."""
    return f"{env.get('agi_channel', '?')} uniqueid={env.get('agi_uniqueid', '?')}"

"""One FastAGI connection as seen by the server: read the `agi_*` block, send commands, get replies.

Rules:
- The header block is read with `readuntil(b"\\n\\n")` under the caller's timeout: EOF before the
  blank line is PeerClosed (never a spin on `b""`, panoramisk 1.4's freeze), a block longer than
  the connection's limit is HeaderTooLarge. Only the server decides how long to wait. The
  reader is the connection (connection.py) or anything reading as a StreamReader does.
- A command is written, then lines are read until its reply: `HANGUP` lines on the way only mark
  the channel as hung up (Asterisk goes on answering GET/SET on a dead channel), a `520-` usage
  block is read to its end. EOF is PeerClosed, a garbage line is ProtocolError.
- Several commands (`commands`) go one at a time, each written only once the reply to the one
  before is in, as Asterisk reads them; the first reply that is not `200` ends them. They run
  in the connection's callbacks (AgiConnection.exchange), the dialogue's task waking once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Protocol

from agi.connection import LINE_END, AgiConnection
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


class Commands:
    """The commands of one exchange and their replies, sans I/O (AgiConnection.exchange drives it).

    `first` is the first command's bytes; `line(raw)` takes each line read and returns the next
    command's bytes once a reply is complete and it was `200`, else None. `done` after the last
    command's reply or the first that is not `200` (the last of `replies`); `HANGUP` lines only
    set `hung_up`, a `520-` block counts as one reply when its `520 ` line ends it.
    """

    def __init__(self, lines: Sequence[str]) -> None:
        if not lines:
            raise ValueError("an exchange needs a command")
        self._commands = [line.encode("utf-8") + LINE_END for line in lines]
        self.first = self._commands[0]
        self.replies: list[Reply] = []
        self.hung_up = False
        self.done = False
        self._usage: str | None = None  # the `520-` line while its block is read

    def line(self, raw: bytes) -> bytes | None:
        text = raw[: -len(LINE_END)].decode("utf-8", "replace").rstrip("\r")
        if self._usage is not None:
            # Asterisk ends the usage text with "520 End of proper usage."
            if not text.startswith("520 "):
                return None
            text, self._usage = self._usage, None
            return self._replied(parse_reply(text[:3] + " " + text[4:]))
        if text == HANGUP_LINE:
            self.hung_up = True
            return None
        if text.startswith(USAGE_CONTINUES):
            self._usage = text
            return None
        return self._replied(parse_reply(text))

    def _replied(self, reply: Reply) -> bytes | None:
        self.replies.append(reply)
        if reply.ok and len(self.replies) < len(self._commands):
            return self._commands[len(self.replies)]
        self.done = True
        return None


class AgiChannel:
    """Commands and replies over one FastAGI connection (the header already read)."""

    def __init__(self, connection: AgiConnection) -> None:
        self._connection = connection
        self.hung_up = False

    async def command(self, line: str) -> Reply:
        """Send one command line and return its reply, noting any `HANGUP` on the way."""
        return (await self.commands([line]))[-1]

    async def commands(self, lines: Sequence[str]) -> list[Reply]:
        """Send `lines` one at a time, each once the reply to the one before is in, and stop
        after the last or after the first reply that is not `200`: the replies, in order."""
        exchange = Commands(lines)
        try:
            await self._connection.exchange(exchange, exchange.first)
        except asyncio.IncompleteReadError:
            raise PeerClosed("closed while a reply was awaited") from None
        except asyncio.LimitOverrunError:
            raise ProtocolError("reply line longer than the connection's limit") from None
        except ConnectionError as exc:
            raise PeerClosed(f"connection failed: {exc}") from None
        finally:
            self.hung_up |= exchange.hung_up
        return exchange.replies


def describe(env: Mapping[str, str]) -> str:
    """The channel and unique id of a session, for log lines (no caller number)."""
    return f"{env.get('agi_channel', '?')} uniqueid={env.get('agi_uniqueid', '?')}"

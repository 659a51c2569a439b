"""The Asterisk side of FastAGI: connect, send the `agi_*` block, answer commands.

Rules (from `fixtures/asterisk/fastagi/*.asterisk_to_server.txt` and the README there):
- AGI speaks `\\n`-ended lines. The env block is `agi_key: value` lines in Asterisk's order, then
  a blank line; missing names read `unknown`, a missing caller `agi_callerid: unknown` with
  `agi_callingpres: 67`.
- Replies: `200 result=1` (VERBOSE, SET VARIABLE), `200 result=1 (value)` for a found GET
  VARIABLE and always for GET FULL VARIABLE, `200 result=0` for an unset GET VARIABLE, `511 ...`
  for ANSWER on a dead channel, `510 Invalid or unknown command` otherwise. GET/SET still work on
  a dead channel.
- `HANGUP\\n` is sent when the caller hangs up during the script, and again at the end of every
  session, right after the server closed its side.
- Unreachable server: AGISTATUS `FAILURE` (nothing on the AGI socket, as in `ami_agi_down.txt`).
  Script ended while the channel is dead: `HANGUP`; else `SUCCESS`.
- Each command is reported to the channel as started / finished so the AMI shows
  `AGIExecStart`, the command's own `VarSet`, then `AGIExecEnd`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import shlex
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

AGI_VERSION = "22.10.1"
DEAD_CHANNEL = "Command Not Permitted on a dead channel or intercept routine"
UNKNOWN_COMMAND = "Invalid or unknown command"
_EXPR = re.compile(r"\$\{([^{}]+)\}")


class AgiChannel(Protocol):
    """The channel an AGI script runs on, as the AGI commands see it."""

    @property
    def dead(self) -> bool: ...

    def lookup(self, name: str) -> str | None: ...

    def set_variable(self, name: str, value: str) -> None: ...

    def command_started(self, command_id: int, command: str) -> None: ...

    def command_finished(self, command_id: int, command: str, code: int, result: str) -> None: ...


def env_block(fields: list[tuple[str, str]]) -> bytes:
    return "".join(f"{key}: {value}\n" for key, value in fields).encode() + b"\n"


def agi_env(
    *, request: str, channel: str, uniqueid: str, caller: str | None, context: str,
    did: str, args: list[str],
) -> list[tuple[str, str]]:  # fmt: skip
    """The env block Asterisk 22 sends, for `request` = `agi://host:port/script`."""
    script = request.split("/", 3)[3] if request.count("/") >= 3 else "calltracking"
    name = "Anonymous" if caller == "anonymous" else "unknown"
    fields = [
        ("agi_network", "yes"),
        ("agi_network_script", script),
        ("agi_request", request),
        ("agi_channel", channel),
        ("agi_language", "en"),
        ("agi_type", channel.split("/", 1)[0]),
        ("agi_uniqueid", uniqueid),
        ("agi_version", AGI_VERSION),
        ("agi_callerid", caller or "unknown"),
        ("agi_calleridname", name),
        ("agi_callingpres", "0" if caller else "67"),
        ("agi_callingani2", "0"),
        ("agi_callington", "0"),
        ("agi_callingtns", "0"),
        ("agi_dnid", "unknown"),
        ("agi_rdnis", "unknown"),
        ("agi_context", context),
        ("agi_extension", did),
        ("agi_priority", "6"),
        ("agi_enhanced", "0.0"),
        ("agi_accountcode", ""),
        ("agi_threadid", str(random.randrange(139_850_000_000_000, 139_860_000_000_000))),
    ]
    fields += [(f"agi_arg_{i}", arg) for i, arg in enumerate(args, start=1)]
    return fields


def _words(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError:  # an unbalanced quote: take the words as they are
        return line.split()


def evaluate(channel: AgiChannel, expression: str) -> str:
    """`${NAME}` substitution for GET FULL VARIABLE; unknown names give an empty string."""
    return _EXPR.sub(lambda m: channel.lookup(m.group(1)) or "", expression)


def execute(channel: AgiChannel, line: str) -> tuple[str, bool]:
    """Run one AGI command; return the reply line and whether the script asked to hang up."""
    words = _words(line)
    verb = " ".join(w.upper() for w in words[:3])
    command_id = random.randrange(100_000_000, 2_000_000_000)
    channel.command_started(command_id, line)
    ends = False
    if verb.startswith("GET FULL VARIABLE") and len(words) > 3:
        code, text = 200, f"result=1 ({evaluate(channel, words[3])})"
    elif verb.startswith("GET VARIABLE") and len(words) > 2:
        value = channel.lookup(words[2])
        code, text = 200, "result=0" if value is None else f"result=1 ({value})"
    elif verb.startswith("SET VARIABLE") and len(words) > 2:
        channel.set_variable(words[2], words[3] if len(words) > 3 else "")
        code, text = 200, "result=1"
    elif verb.startswith("VERBOSE"):
        code, text = 200, "result=1"
    elif verb.startswith(("NOOP", "GET VARIABLE", "SET VARIABLE")):
        code, text = 200, "result=0"
    elif verb.startswith("HANGUP"):
        code, text, ends = 200, "result=1", True
    elif verb.startswith(("ANSWER", "EXEC", "STREAM FILE", "SAY", "WAIT FOR DIGIT")):
        code, text = (511, DEAD_CHANNEL) if channel.dead else (200, "result=0")
    else:
        code, text = 510, UNKNOWN_COMMAND
    result = "Success" if code == 200 else text
    channel.command_finished(command_id, line, code, result)
    return f"{code} {text}", ends


class FastAgiSession:
    """One FastAGI dialogue over TCP, driven by the server's commands."""

    def __init__(self, channel: AgiChannel, session_timeout_s: float = 30.0) -> None:
        self._channel = channel
        self._timeout = session_timeout_s
        self._writer: asyncio.StreamWriter | None = None

    def notify_hangup(self) -> None:
        """The caller hung up while the script runs: Asterisk tells the script at once."""
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(b"HANGUP\n")

    async def run(
        self, host: str, port: int, env: list[tuple[str, str]],
        on_connected: Callable[[], None] | None = None,
    ) -> str:  # fmt: skip
        """The whole dialogue; `on_connected` runs once the env block is sent."""
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancellation that
            # meets a refused connection, and a caller's loop of calls could then never stop.
            async with asyncio.timeout(3.0):
                reader, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError) as exc:
            log.info("FastAGI %s:%d unreachable: %s", host, port, exc)
            return "FAILURE"
        self._writer = writer
        try:
            writer.write(env_block(env))
            await writer.drain()
            if on_connected is not None:
                on_connected()
            async with asyncio.timeout(self._timeout):
                await self._dialogue(reader, writer)
        except TimeoutError:
            log.warning("FastAGI %s:%d did not finish within %.0f s", host, port, self._timeout)
        except ConnectionError as exc:
            log.info("FastAGI %s:%d dropped the connection: %s", host, port, exc)
        finally:
            self._writer = None
            writer.close()
        return "HANGUP" if self._channel.dead else "SUCCESS"

    async def _dialogue(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            raw = await reader.readline()
            if not raw:
                # The server closed its side: Asterisk always answers that with HANGUP.
                writer.write(b"HANGUP\n")
                await writer.drain()
                return
            line = raw.decode(errors="replace").strip()
            if not line:
                continue
            answer, _ = execute(self._channel, line)
            writer.write(answer.encode() + b"\n")
            await writer.drain()


def run_scripted(channel: AgiChannel, commands: list[str]) -> str:
    """An in-process AGI script (used when no FastAGI server is configured)."""
    for line in commands:
        _, ends = execute(channel, line)
        if ends:
            break
    return "HANGUP" if channel.dead else "SUCCESS"

"""The FastAGI wire format, without I/O: the `agi_*` block, the script name, commands, replies.

Rules (TECH_NOTES 2.6; the captures in fixtures/asterisk/fastagi/):
- LF only. Asterisk opens with `agi_name: value` lines and a blank line; a missing value is the
  literal `unknown`, an empty one is empty (`agi_accountcode: `).
- `agi_network_script` is everything after the URL's first `/`, query string included
  (`calltracking?did=74951110001`). The query is split on `&` and `=` and percent-decoded, but a
  `+` stays a `+`: it is the E.164 prefix here, not a form-encoded space.
- A command is one line. Arguments are split on blanks unless quoted; inside quotes `\\` escapes
  `"` and `\\` (res_agi.c parse_args). A line break would end the command early, so `quote`
  drops control characters.
- A reply is `NNN result=R [(data)] [endpos=N]` or `NNN text` (510 invalid command, 511 dead
  channel); `520-...` opens a usage block that ends with a line starting `520 `. The data keeps
  any parentheses inside it. `HANGUP` is a line of its own, sent when the caller hangs up and
  again after every session; it is not a reply.

    AgiError
    ├── PeerClosed      the socket closed before the expected line
    └── ProtocolError   a line that is not what AGI sends
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

HANGUP_LINE = "HANGUP"
USAGE_CONTINUES = "520-"
CODE_OK = 200
CODE_DEAD_CHANNEL = 511

_REPLY = re.compile(
    r"(?P<code>\d{3})(?: result=(?P<result>-?\d+)(?: \((?P<data>.*)\))?)?(?P<rest>.*)"
)
# `agi_name: value`, the one blank after the colon not part of the value (an empty value is
# `agi_name: `, or `agi_name:`); the name is everything before the first colon.
_ENV_LINE = re.compile(r"(agi_[a-z0-9_]+): ?(.*)", re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class AgiError(Exception):
    """Base of what goes wrong on one FastAGI connection."""


class PeerClosed(AgiError):
    """Asterisk (or whatever connected) closed the socket before the expected line."""


class ProtocolError(AgiError):
    """A line that is not what Asterisk sends."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One reply line: `code`, the `result=` word and the parenthesised data when present."""

    code: int
    result: str | None
    data: str | None
    line: str

    @property
    def ok(self) -> bool:
        return self.code == CODE_OK

    @property
    def dead_channel(self) -> bool:
        return self.code == CODE_DEAD_CHANNEL


def parse_env(block: bytes) -> dict[str, str]:
    """The `agi_*` variables of a header block (up to, not including, the blank line).

    A line that is not `agi_name: value` is a ProtocolError: whatever sent it is not Asterisk.
    """
    env: dict[str, str] = {}
    for raw in block.decode("utf-8", "replace").split("\n"):
        line = raw.rstrip("\r")
        if not line:
            continue
        found = _ENV_LINE.fullmatch(line)
        if found is None:
            raise ProtocolError(f"not an AGI environment line: {line[:60]!r}")
        env[found[1]] = found[2]
    return env


def split_script(network_script: str) -> tuple[str, dict[str, str]]:
    """`calltracking?did=7495...` -> ("calltracking", {"did": "7495..."}); the first value wins."""
    path, _, query = network_script.partition("?")
    params: dict[str, str] = {}
    for pair in query.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        params.setdefault(unquote(key), unquote(value))
    return path.strip("/"), params


def quote(value: str) -> str:
    """`value` as one quoted AGI argument: `\\` and `"` escaped, control characters dropped."""
    clean = _CONTROL.sub("", value)
    return '"' + clean.replace("\\", "\\\\").replace('"', '\\"') + '"'


def set_variable(name: str, value: str) -> str:
    return f"SET VARIABLE {name} {quote(value)}"


def get_full_variable(expression: str) -> str:
    return f"GET FULL VARIABLE {quote(expression)}"


_COMMON: dict[str, Reply] = {}


def parse_reply(line: str) -> Reply:
    """One reply line (without its LF). Raises ProtocolError on anything else."""
    common = _COMMON.get(line)
    if common is not None:
        return common  # a Reply is immutable: the usual `200 result=1` is parsed once
    return _parse_reply(line)


def _parse_reply(line: str) -> Reply:
    text = line.rstrip("\r")
    match = _REPLY.fullmatch(text)
    if match is None:
        raise ProtocolError(f"not an AGI reply: {text[:60]!r}")
    code = int(match["code"])
    result, data, rest = match["result"], match["data"], match["rest"]
    if code == CODE_OK and result is None:
        raise ProtocolError(f"200 reply without result: {text[:60]!r}")
    # Only "endpos=N" may follow the result; a 5xx line carries free text instead of a result.
    if result is not None and rest and not rest.strip().startswith("endpos="):
        raise ProtocolError(f"unexpected text after the result: {text[:60]!r}")
    return Reply(code=code, result=result, data=data, line=text)


# What every SET VARIABLE is answered with (and its refusal), parsed once.
_COMMON |= {line: _parse_reply(line) for line in ("200 result=1", "200 result=0")}

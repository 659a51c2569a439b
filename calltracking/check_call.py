"""Proving the AMI user's read rights from events, for `calltracking check`.

Rules:
- The listener needs three read classes: `call` (Newchannel, Dial*, Bridge*, Hangup: a call's
  life and answer), `dialplan` (Newexten, VarSet: the trunk context, CALLTRACKING_DID, the
  recording's name) and `agi` (AGIExecStart/End: the FastAGI ran). Cdr events are ignored by
  the listener, so `cdr` is not needed.
- A right is proven only by an event of that class (its `Privilege` header). Asterisk sends no
  event of a class the user may not read, and nothing says which classes a user holds, so a
  class no event showed is a failure, never a guess.
- `--call DID`: the test call is the first Linkedid with an event in a trunk context whose Exten
  is that DID, or a VarSet of CALLTRACKING_DID to it (numbers compared as E.164). Its events
  prove rights until all three are proven or its first channel hangs up; the wait is bounded.
- Without `--call`: whatever traffic passes in a short window proves what it can.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection
from dataclasses import dataclass, field

from calltracking.core import numbers

NEEDED = ("call", "dialplan", "agi")
EXAMPLES = {"call": "Newchannel/Hangup", "dialplan": "Newexten/VarSet", "agi": "AGIExecStart/End"}


def parse(raw: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in raw.decode(errors="replace").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers.setdefault(name.strip().lower(), value.strip())
    return headers


def classes(message: dict[str, str]) -> set[str]:
    return {c.strip() for c in message.get("privilege", "").split(",") if c.strip()} - {"all"}


@dataclass(slots=True)
class TestCall:
    """Follows the test call to `did` and the classes its events proved."""

    did: str
    trunk_contexts: Collection[str]
    country_code: str
    linkedid: str = ""
    proven: set[str] = field(default_factory=set)
    over: bool = False

    def _is_test_call(self, ev: dict[str, str]) -> bool:
        want = numbers.normalise(self.did, self.country_code)
        variable = ev.get("variable", "").lstrip("_").upper()
        if ev.get("event", "").lower() == "varset" and variable == "CALLTRACKING_DID":
            return numbers.normalise(ev.get("value", ""), self.country_code) == want
        if ev.get("context", "") not in self.trunk_contexts:
            return False
        return numbers.normalise(ev.get("exten", ""), self.country_code) == want

    def feed(self, ev: dict[str, str]) -> None:
        if not self.linkedid and ev.get("linkedid") and self._is_test_call(ev):
            self.linkedid = ev["linkedid"]
        if not self.linkedid or ev.get("linkedid") != self.linkedid:
            return
        self.proven |= classes(ev) & set(NEEDED)
        first_gone = ev.get("event", "").lower() == "hangup" and ev.get("uniqueid") == self.linkedid
        self.over = first_gone or all(c in self.proven for c in NEEDED)


async def watch_test_call(reader: asyncio.StreamReader, call: TestCall, wait_s: float) -> None:
    """Read events until the test call proved every right, ended, or `wait_s` passed."""
    with contextlib.suppress(TimeoutError, asyncio.IncompleteReadError):
        async with asyncio.timeout(wait_s):
            while not call.over:
                call.feed(parse(await reader.readuntil(b"\r\n\r\n")))


async def seen_classes(reader: asyncio.StreamReader, seconds: float) -> set[str]:
    """The classes of whatever events pass in `seconds`."""
    seen: set[str] = set()
    with contextlib.suppress(TimeoutError, asyncio.IncompleteReadError):
        async with asyncio.timeout(seconds):
            while True:
                seen |= classes(parse(await reader.readuntil(b"\r\n\r\n")))
    return seen

"""Read the recorded Asterisk AMI transcripts (fixtures/asterisk/ami_*.txt) for tests.

A transcript is every byte Asterisk sent: one banner line (`Asterisk Call Manager/...\\r\\n`), then
messages separated by an empty line (`\\r\\n\\r\\n`). `blocks` keeps each message's raw bytes (to
replay over TCP); `messages` parses them into header dicts (the first of a repeated header wins).
The folder is `tests/fixtures/asterisk`, a copy of the shared captures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.support.fixtures import ASTERISK

SEP = b"\r\n\r\n"


def fixtures_dir() -> Path:
    return ASTERISK


@dataclass(frozen=True, slots=True)
class Transcript:
    name: str
    banner: bytes
    blocks: tuple[bytes, ...]

    @property
    def messages(self) -> list[dict[str, str]]:
        return [parse_block(block) for block in self.blocks]

    @property
    def events(self) -> list[dict[str, str]]:
        return [m for m in self.messages if "Event" in m]


def parse_block(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.decode("utf-8", "replace").split("\r\n"):
        name, sep, value = line.partition(": ")
        if sep:
            headers.setdefault(name, value)
    return headers


def load(name: str) -> Transcript:
    """`load("answered_call")` reads `ami_answered_call.txt`."""
    data = (fixtures_dir() / f"ami_{name}.txt").read_bytes()
    banner, _, rest = data.partition(b"\r\n")
    blocks = tuple(b for b in rest.split(SEP) if b.strip())
    return Transcript(name, banner + b"\r\n", blocks)


def render(headers: dict[str, str]) -> bytes:
    """One AMI message as Asterisk writes it."""
    return "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode() + b"\r\n"

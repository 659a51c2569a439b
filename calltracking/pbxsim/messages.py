"""AMI messages as values, and their wire form.

Rules kept here (all observed in `fixtures/asterisk/ami_*.txt`):
- A message is an ordered list of `Key: Value` lines ended by `\\r\\n`, and a blank line ends the
  message. Header order matters to people reading captures, so it is kept as given.
- Values may be empty (`AccountCode: `); the space after the colon is always written.
- Replies put `Response` first and the client's `ActionID` second (when it sent one).
- Reading is lenient: `\\n` or `\\r\\n` line ends, keys compared without case.
"""

from __future__ import annotations

from dataclasses import dataclass

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class AmiMessage:
    """One AMI message (event, reply or action) with its headers in wire order."""

    headers: Headers

    def get(self, key: str, default: str = "") -> str:
        wanted = key.lower()
        for name, value in self.headers:
            if name.lower() == wanted:
                return value
        return default

    def has(self, key: str) -> bool:
        wanted = key.lower()
        return any(name.lower() == wanted for name, _ in self.headers)

    @property
    def event(self) -> str:
        return self.get("Event")

    @property
    def privilege(self) -> str:
        return self.get("Privilege")

    def encode(self) -> bytes:
        return "".join(f"{k}: {v}\r\n" for k, v in self.headers).encode() + b"\r\n"


def event(name: str, privilege: str | None, *parts: Headers | list[tuple[str, str]]) -> AmiMessage:
    """An event: `Event` first, then `Privilege` (omitted for action-list events), then parts."""
    headers: list[tuple[str, str]] = [("Event", name)]
    if privilege is not None:
        headers.append(("Privilege", privilege))
    for part in parts:
        headers.extend(part)
    return AmiMessage(tuple(headers))


def reply(
    response: str, action_id: str | None, *parts: Headers | list[tuple[str, str]]
) -> AmiMessage:
    headers: list[tuple[str, str]] = [("Response", response)]
    if action_id is not None:
        headers.append(("ActionID", action_id))
    for part in parts:
        headers.extend(part)
    return AmiMessage(tuple(headers))


def parse_lines(lines: list[str]) -> AmiMessage:
    """Build a message from its lines (without line ends); lines without a colon are skipped."""
    headers: list[tuple[str, str]] = []
    for line in lines:
        key, sep, value = line.partition(":")
        if not sep:
            continue
        headers.append((key.strip(), value[1:] if value.startswith(" ") else value))
    return AmiMessage(tuple(headers))


def parse_stream(data: bytes) -> list[AmiMessage]:
    """Split a captured stream (banner line first, as in the fixtures) into messages."""
    text = data.decode().replace("\r\n", "\n")
    if text.startswith("Asterisk Call Manager"):
        text = text.partition("\n")[2]
    return [parse_lines(block.split("\n")) for block in text.split("\n\n") if block.strip()]


def with_timestamp(message: AmiMessage, at: float) -> AmiMessage:
    """The event with `Timestamp: <epoch.usec>` after its Privilege (timestampevents = yes);
    action-list events (no Privilege) carry none."""
    headers = list(message.headers)
    if not message.has("Event") or not message.has("Privilege") or message.has("Timestamp"):
        return message
    index = next(i for i, (k, _) in enumerate(headers) if k.lower() == "privilege") + 1
    headers.insert(index, ("Timestamp", f"{at:.6f}"))
    return AmiMessage(tuple(headers))

"""Reading AMI event headers: names without case, the event's time, devices, durations.

headers        Asterisk's header names, looked up lowercased; a repeated header (ChanVariable)
               counts by its first value; values are stripped; non-text values are dropped.
               `parse_block` reads a raw block into `Headers`, which carry that normalised
               form already (one pass per event on the hot path).
time           facts carry the event's `Timestamp` (timestampevents=yes) when it is within
               MAX_SKEW of `now`, else `now` (also for a missing or garbled stamp).
device         a channel without its `-xxxxxxxx;n` suffix: `PJSIP/101-0000002a` -> `PJSIP/101`.
duration       CoreShowChannel `Duration: HH:MM:SS` (hours may exceed 24, capped); garbage -> 0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

MAX_SKEW = timedelta(minutes=5)
_DEVICE = re.compile(r"^(?P<device>.+?)-[0-9a-fA-F]{8}(?:;\d+)?$")


def device(channel: str) -> str | None:
    """The device of a channel: `PJSIP/101-0000002a` -> `PJSIP/101`, `Local/op@ops-00000001;1` ->
    `Local/op@ops`."""
    if not channel:
        return None
    match = _DEVICE.match(channel)
    return match.group("device") if match else channel


class Headers(dict[str, str]):
    """An event's headers as Asterisk named them, with their normalised form read in the same
    pass (`lowered`), so the hot path builds it once (see `parse_block`)."""

    __slots__ = ("lowered",)

    def __init__(self) -> None:
        super().__init__()
        self.lowered: dict[str, str] = {}


def parse_block(block: str) -> Headers:
    """An AMI message block (`Key: value` lines joined by CRLF) as `Headers`: the first of a
    repeated header; lines without `: ` dropped."""
    out = Headers()
    lowered = out.lowered
    for line in block.split("\r\n"):
        key, sep, value = line.partition(": ")
        if sep and key not in out:
            out[key] = value
            name = key.lower()
            if name not in lowered:
                lowered[name] = value.strip()
    return out


def normalised(event: Mapping[str, object]) -> dict[str, str]:
    if event.__class__ is Headers:
        return event.lowered
    out: dict[str, str] = {}
    for key, value in event.items():
        if value.__class__ is not str:  # the common case first: it runs for every AMI event
            if isinstance(value, (list, tuple)) and value:
                value = value[0]  # a repeated header (ChanVariable): the first one
            if not isinstance(value, str):
                continue
        name = key.lower() if key.__class__ is str else str(key).lower()
        if name not in out:
            out[name] = value.strip()
    return out


def event_time(ev: Mapping[str, str], now: datetime) -> datetime:
    try:
        stamp = float(ev.get("timestamp", ""))
        if not math.isfinite(stamp):
            return now
        at = datetime.fromtimestamp(stamp, UTC)
    except (ValueError, OverflowError, OSError):
        return now
    return at if abs(at - now) <= MAX_SKEW else now


def parse_int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def snapshot_duration(text: str) -> timedelta:
    """CoreShowChannel `Duration: HH:MM:SS` (hours may exceed 24); garbage -> 0."""
    parts = text.split(":")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts):
        return timedelta()
    hours, minutes, seconds = (int(p) for p in parts)
    return timedelta(hours=min(hours, 10_000), minutes=minutes, seconds=seconds)

"""What goes through the AMI listener's one queue (event_queue.py): events stamped with their
receive time, reconcile snapshots and sweep ticks, and the facts folded from a run of events.

Rules:
- A snapshot carries a future for the variables Getvar reads; the consumer waits for it at the
  snapshot's place in the queue, so events that arrive meanwhile are still applied after it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from calltracking.core.callflow.facts import Fact


@dataclass(frozen=True, slots=True)
class Event:
    headers: dict[str, str]
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Snapshot:
    channels: list[dict[str, str]]
    requested_at: datetime
    # uniqueid -> what Getvar read; the consumer waits for it at the snapshot's place in the
    # queue, so events that arrive meanwhile are still applied after the snapshot.
    variables: asyncio.Future[dict[str, dict[str, str]]]


@dataclass(frozen=True, slots=True)
class Tick:
    now: datetime


Item = Event | Snapshot | Tick


@dataclass(slots=True)
class Folded:
    """Facts of a run of events, and the events (acknowledged once the facts are written)."""

    facts: list[Fact] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


def describe(item: Item) -> str:
    if isinstance(item, Event):
        return f"event {item.headers.get('Event')!r} of {item.headers.get('Linkedid')!r}"
    return type(item).__name__.lstrip("_").lower()

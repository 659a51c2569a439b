"""Doubles shared by the bus tests: an in-memory `Outbox`, a bus that records what it published,
and a handler that collects events and lets a test wait for a condition instead of sleeping."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from calltracking.bus.base import Bus, Handler, Subscription, Wants
from calltracking.core.events import Event

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def make_event(key: str, **data: object) -> Event:
    return Event(key=key, id=uuid.uuid4().hex, occurred_at=T0, data={"n": 1, **data})


class Watched:
    """Something a test can wait on: `wait_until` re-checks its condition at every change."""

    def __init__(self, changed: asyncio.Event | None = None) -> None:
        # Several watched objects may share one event when a condition spans them.
        self.changed = changed or asyncio.Event()

    async def wait_until(self, done: Callable[[], bool], within_s: float = 15.0) -> None:
        async with asyncio.timeout(within_s):
            while not done():
                self.changed.clear()
                await self.changed.wait()


class MemoryOutbox(Watched):
    """What the SQL outbox is to the relay: pending rows in insertion order, marks recorded."""

    def __init__(self, events: Sequence[Event]) -> None:
        super().__init__()
        self.events = list(events)
        self.published: list[str] = []

    @property
    def pending(self) -> list[str]:
        done = set(self.published)
        return [e.id for e in self.events if e.id not in done]

    async def fetch_pending(self, limit: int) -> list[Event]:
        done = set(self.published)
        return [e for e in self.events if e.id not in done][:limit]

    async def mark_published(self, event_ids: Sequence[str]) -> None:
        self.published.extend(i for i in event_ids if i not in self.published)
        self.changed.set()


class RecordingBus:
    """Delegates to a real bus and records the ids it was asked to publish and that went through."""

    def __init__(self, inner: Bus) -> None:
        self.inner = inner
        self.confirmed: list[str] = []

    async def publish(self, event: Event) -> None:
        await self.inner.publish(event)
        self.confirmed.append(event.id)

    async def subscribe(
        self,
        queue: str | None,
        keys: Sequence[str],
        handler: Handler,
        *,
        durable: bool = True,
        prefetch: int = 16,
        wants: Wants | None = None,
    ) -> Subscription:
        return await self.inner.subscribe(
            queue, keys, handler, durable=durable, prefetch=prefetch, wants=wants
        )

    async def close(self) -> None:
        await self.inner.close()


class Collector(Watched):
    """A handler that records events (`calls`: every call; `events`: the successful ones);
    the ids in `fail_ids` always raise."""

    def __init__(self, fail_ids: Sequence[str] = (), changed: asyncio.Event | None = None) -> None:
        super().__init__(changed)
        self.events: list[Event] = []
        self.calls: list[str] = []
        self.fail_ids = set(fail_ids)

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.events]

    async def __call__(self, event: Event) -> None:
        self.calls.append(event.id)
        self.changed.set()
        if event.id in self.fail_ids:
            raise RuntimeError(f"poison {event.id}")
        self.events.append(event)

"""The in-process bus: the embedded default (`CALLTRACKING_AMQP_URL` empty) and the tests' stand-in.

It keeps the semantics of base.py, so code that works on it works on RabbitMQ:
- events cross it in their JSON form, so each queue gets its own copy and a payload that could
  not cross RabbitMQ fails here too (TypeError from `publish`);
- an event whose key matches no queue is dropped, as an unroutable message is on the broker;
- a named queue keeps its events while no one consumes it (as a durable queue does), except a
  `durable=False` one, which goes away with its last subscription; broadcast queues go with theirs;
- a failed event goes back to the tail of its queue; after `max_attempts` failures it is kept in
  `dead_letters` (what `calltracking.dead` is on RabbitMQ) with one error line;
- an event being handled when its subscription closes goes back to its queue, as an unacked
  message does;
- a queue whose every consumer gave `wants` (base.py) and refuses an event is not given it: no
  copy, no turn of its task. A queue with no consumer keeps every event, as above. `wanted`
  says whether any queue would take an event now.
Nothing survives the process; that is why the contract refuses a split deployment without a broker.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from calltracking.bus.base import (
    DEDUP_SIZE,
    MAX_ATTEMPTS,
    BusError,
    Handler,
    SeenIds,
    Wants,
    topic_matches,
)
from calltracking.core.events import Event

log = logging.getLogger(__name__)


# Types that a JSON round trip gives back as they went in (same type, equal value).
_PLAIN = frozenset((str, int, float, bool, type(None)))
# Deeper than any event's payload; a deeper (or circular) one takes the JSON round trip.
_MAX_DEPTH = 16


def _copier(event: Event) -> Callable[[], Event]:
    """What makes each queue's copy of `event`: the JSON round trip a broker would make, or,
    for an event whose round trip is known to give back what went in (plain strings, a UTC
    time, data of dicts with string keys, lists and plain values: every event the relay
    publishes, `call.started` with its nested attribution included), a new copy of the same
    values, each dict and list a new one. The round trip was a visible part of the relay's
    CPU; the copy is as much a copy (a handler changing its event's data changes no one
    else's)."""
    data = event.data
    if (
        type(event.key) is str
        and type(event.id) is str
        and event.occurred_at.tzinfo is UTC
        and type(data) is dict
        and _plain(data, _MAX_DEPTH)
    ):
        key, event_id, occurred_at = event.key, event.id, event.occurred_at
        return lambda: Event(key, event_id, occurred_at, _copy(data))
    body = json.dumps(event.to_json())  # fails here for a payload that cannot cross a broker
    return lambda: Event.from_json(json.loads(body))


def _plain(value: Any, depth: int) -> bool:
    """True when a JSON round trip gives `value` back unchanged in value and type."""
    kind = type(value)
    if kind in _PLAIN:
        return True
    if depth == 0:
        return False
    if kind is dict:
        return all(type(k) is str and _plain(v, depth - 1) for k, v in value.items())
    if kind is list:
        return all(_plain(v, depth - 1) for v in value)
    return False


def _copy(value: Any) -> Any:
    """A new copy of every dict and list of a `_plain` value."""
    kind = type(value)
    if kind is dict:
        return {k: _copy(v) for k, v in value.items()}
    if kind is list:
        return [_copy(v) for v in value]
    return value


def _bound(queue: _Queue, key: str) -> bool:
    return any(topic_matches(pattern, key) for pattern in queue.patterns)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    queue: str
    event: Event
    attempts: int
    error: str


@dataclass(frozen=True, slots=True)
class _Delivery:
    event: Event
    attempts: int = 0


@dataclass(slots=True)
class _Queue:
    name: str
    auto_delete: bool
    patterns: set[str] = field(default_factory=set)
    items: asyncio.Queue[_Delivery] = field(default_factory=asyncio.Queue)
    consumers: int = 0
    # One per consumer that gave one; a consumer without it wants everything (`filtered`).
    wants: list[Wants] = field(default_factory=list)

    @property
    def filtered(self) -> bool:
        return 0 < self.consumers == len(self.wants)

    def takes(self, event: Event) -> bool:
        """Whether `event` goes into this queue (its key matched)."""
        return not self.filtered or any(wants(event) for wants in self.wants)


class MemorySubscription:
    """One consumer of one queue: a task that handles its events one at a time."""

    def __init__(
        self,
        bus: MemoryBus,
        queue: _Queue,
        handler: Handler,
        dedup_size: int,
        wants: Wants | None = None,
    ) -> None:
        self._bus = bus
        self._queue = queue
        self._handler = handler
        self.wants = wants
        self._seen = SeenIds(dedup_size)
        self._task = asyncio.create_task(self._consume(), name=f"bus-consumer:{queue.name}")
        self._closed = False

    @property
    def queue(self) -> str:
        return self._queue.name

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._task.cancel()
        # wait() does not raise the task's CancelledError, but does raise ours if we are cancelled.
        await asyncio.wait([self._task])
        self._bus._forget(self, self._queue)

    async def _consume(self) -> None:
        items = self._queue.items
        while True:
            # Yield between events so the queue's other consumers take turns (the broker
            # round-robins); a handler that never awaits would otherwise take the whole queue.
            await asyncio.sleep(0)
            delivery = await items.get()
            try:
                await self._handle(delivery)
            except asyncio.CancelledError:
                items.put_nowait(delivery)
                raise
            finally:
                items.task_done()

    async def _handle(self, delivery: _Delivery) -> None:
        event = delivery.event
        if event.id in self._seen:
            log.debug("event %s (%s) already handled on queue %s", event.id, event.key, self.queue)
            return
        try:
            await self._handler(event)
        except Exception as exc:
            self._bus._failed(self._queue, delivery, exc)
            return
        self._seen.add(event.id)


class MemoryBus:
    def __init__(self, *, max_attempts: int = MAX_ATTEMPTS, dedup_size: int = DEDUP_SIZE) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.max_attempts = max_attempts
        self.dead_letters: list[DeadLetter] = []
        self._dedup_size = dedup_size
        self._queues: dict[str, _Queue] = {}
        self._subscriptions: set[MemorySubscription] = set()
        self._broadcast_ids = itertools.count(1)
        self._closed = False

    async def publish(self, event: Event) -> None:
        if self._closed:
            raise BusError("the bus is closed")
        copy = _copier(event)
        for queue in self._queues.values():
            if _bound(queue, event.key) and queue.takes(event):
                queue.items.put_nowait(_Delivery(copy()))

    def wanted(self, event: Event) -> bool:
        """Whether publishing `event` now would give it to any queue (an event no queue takes
        is dropped, as an unroutable message is on a broker)."""
        return any(_bound(q, event.key) and q.takes(event) for q in self._queues.values())

    async def subscribe(
        self,
        queue: str | None,
        keys: Sequence[str],
        handler: Handler,
        *,
        durable: bool = True,
        prefetch: int = 16,
        wants: Wants | None = None,
    ) -> MemorySubscription:
        # prefetch has no meaning in-process: a subscription takes one event at a time anyway.
        if self._closed:
            raise BusError("the bus is closed")
        if not keys or isinstance(keys, str):
            raise ValueError("keys must be a non-empty sequence of topic patterns")
        if queue == "":
            raise ValueError("a named queue needs a name; pass None for a broadcast queue")
        if queue is None:
            name = f"broadcast.{next(self._broadcast_ids)}"
            target = self._queues[name] = _Queue(name, auto_delete=True)
        else:
            target = self._queues.setdefault(queue, _Queue(queue, auto_delete=not durable))
        target.patterns.update(keys)
        target.consumers += 1
        if wants is not None:
            target.wants.append(wants)
        subscription = MemorySubscription(self, target, handler, self._dedup_size, wants)
        self._subscriptions.add(subscription)
        return subscription

    async def join(self) -> None:
        """Wait until every consumed queue is empty and idle (tests use it instead of sleeping)."""
        await asyncio.gather(*(q.items.join() for q in self._queues.values() if q.consumers))

    async def close(self) -> None:
        self._closed = True
        for subscription in list(self._subscriptions):
            await subscription.close()

    def _forget(self, subscription: MemorySubscription, queue: _Queue) -> None:
        self._subscriptions.discard(subscription)
        queue.consumers -= 1
        if subscription.wants is not None:
            queue.wants.remove(subscription.wants)
        if queue.auto_delete and queue.consumers == 0:
            self._queues.pop(queue.name, None)

    def _failed(self, queue: _Queue, delivery: _Delivery, exc: Exception) -> None:
        event, attempts = delivery.event, delivery.attempts + 1
        if attempts < self.max_attempts:
            log.warning(
                "handler failed for event %s (%s) on queue %s, attempt %d of %d",
                event.id,
                event.key,
                queue.name,
                attempts,
                self.max_attempts,
                exc_info=exc,
            )
            queue.items.put_nowait(_Delivery(event, attempts))
            return
        log.error(
            "event %s (%s) dead-lettered from queue %s after %d failed attempts",
            event.id,
            event.key,
            queue.name,
            attempts,
            exc_info=exc,
        )
        self.dead_letters.append(DeadLetter(queue.name, event, attempts, repr(exc)))

"""The `Bus` port: how the system publishes and consumes domain events (CONTRACT.md, "Event bus").

Rules both implementations keep:
- Topic keys follow AMQP: words split on `.`, `*` matches one word, `#` zero or more.
- `subscribe(queue=None, ...)` makes an exclusive broadcast queue for this node: every broadcast
  subscription receives every matching event (e.g. lease changes pushed to this node's websockets).
  A named queue is a shared work queue: the subscriptions of that name, on any node, compete, and
  each event goes to one of them. Bindings of a named queue accumulate, as in AMQP.
- A subscription handles one event at a time, in delivery order; `prefetch` only says how many
  the broker may push ahead. For concurrency, subscribe several times to the same named queue.
- A handler that raises gets the event again at the tail of its queue (so the events behind it go
  on); after `max_attempts` failures the event is dead-lettered with a log line. There is no delay
  between attempts: consumers own their back-off for transient failures (exporters keep retry
  state in their store), the bus retries only to get past poison.
- Delivery is at least once. Each subscription skips event ids it already handled (`SeenIds`, a
  bounded LRU), which absorbs redeliveries after a lost ack or a re-published outbox row; but it
  forgets, and it is per process, so true idempotency lives in the consumers' own stores.
- A subscription may give `wants`, a cheap synchronous check of an event it would ignore (a
  site without webhooks, a visitor with no tab on this node): an event it refuses is settled
  without calling the handler. The in-process bus asks at publish time, so a refused event is
  never copied or queued, and `MemoryBus.wanted` tells the writers of the outbox whether any
  queue would take an event at all (store/outbox.py, "Settled rows"); a broker's subscription
  asks on delivery. `wants` must not change the event, and answers True whenever it cannot tell.
- `publish` returns only once the event is safe (the broker confirmed it) and raises `BusError`
  otherwise, within a bounded time, so the outbox relay never marks an unconfirmed event sent.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from calltracking.core.events import Event

Handler = Callable[[Event], Awaitable[None]]
Wants = Callable[[Event], bool]

#: Failures of one event's handler before the event is dead-lettered.
MAX_ATTEMPTS = 5
#: Event ids each subscription remembers for deduplication.
DEDUP_SIZE = 10_000


@functools.lru_cache(maxsize=4096)  # a bus has a few patterns and a few dozen keys
def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: `*` is exactly one word, `#` zero or more words."""
    return _match(tuple(pattern.split(".")), tuple(key.split(".")))


def _match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    return bool(words) and head in ("*", words[0]) and _match(rest, words[1:])


class BusError(Exception):
    """The bus could not take an event (broker away, no confirm in time, bus closed)."""


class Subscription(Protocol):
    @property
    def queue(self) -> str:
        """The queue's name (generated for broadcast queues)."""
        ...

    async def close(self) -> None:
        """Stop consuming; an event being handled is cancelled and delivered again later."""
        ...


class Bus(Protocol):
    async def publish(self, event: Event) -> None:
        """Return once the event is confirmed; raise `BusError` when it may not be."""
        ...

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
        """Consume events matching `keys` (topic patterns) from `queue` (None: broadcast).

        `durable=False` on a named queue: the queue goes away with its last consumer. `wants`:
        events it refuses are settled unhandled (see the module's rules).
        """
        ...

    async def close(self) -> None:
        """Close every subscription, then the connection; later publishes raise `BusError`."""
        ...


class SeenIds:
    """A bounded LRU of event ids: `add` returns False when the id was already there."""

    def __init__(self, size: int = DEDUP_SIZE) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self._size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, event_id: str) -> bool:
        if event_id in self._ids:
            self._ids.move_to_end(event_id)
            return False
        self._ids[event_id] = None
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)
        return True

"""The AMI listener's one queue and its two consumers: events folded in memory by the pure
`CallFlow`, their facts stored by one writer (group commit); snapshots and ticks handled alone,
in their place.

Rules:
- panoramisk's event callback only puts the event, stamped with the receive time, on this one
  `asyncio.Queue`; one consumer task feeds the pure `CallFlow`, so facts of a call reach the
  recorder in order. Reconcile snapshots and sweep ticks go through the same queue, so they are
  ordered with the events around them.
- Group commit: the consumer takes what is queued (up to `_BATCH_MAX` items), folds the events
  in memory (pure `CallFlow`) and hands their facts to one writer task; the writer stores all
  that was folded while it was busy with one `FactSink.apply` (one transaction when the
  recorder takes batches) and only then counts the events done (`join`). Folding and handing
  over happen under one lock, so facts reach the store in the order the flow decided them.
  Irrelevant events cost a fold step and no I/O.
- A snapshot or tick first waits until the writer has stored everything folded before it, so
  the recorder's open calls it reads are current, then is handled alone.
- A full queue (a slow recorder) pauses reading from the socket until it drains; Asterisk then
  buffers, and drops us past its `writetimeout` (we reconnect and reconcile).
- Each event is one boundary, and each fact (facts_sink.py): an exception is logged once with
  the call and skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from ami_listener.facts_sink import FactSink
from ami_listener.queue_items import Event, Folded, Item, Snapshot, Tick, describe
from calltracking.core.callflow.reconcile import CallFlow

log = logging.getLogger(__name__)
_QUEUE_HIGH, _QUEUE_LOW = 10_000, 1_000
_BATCH_MAX = 2_000  # queued items folded at a time, at most
_WRITES_MAX = 16  # folded batches waiting for the writer, at most


class EventQueue:
    def __init__(
        self,
        flow: CallFlow,
        sink: FactSink,
        handle: Callable[[Snapshot | Tick], Awaitable[None]],
        transport: Callable[[], asyncio.Transport | None],
    ) -> None:
        self._flow = flow
        self._sink = sink
        self._handle = handle  # a snapshot or tick, alone (reconcile.py)
        self._transport = transport  # the current session's, if any (paused when full)
        self._items: asyncio.Queue[Item] = asyncio.Queue()
        self._lock = asyncio.Lock()
        # Folded facts on their way to the one writer; bounded, so folding cannot run far ahead.
        self._writes: asyncio.Queue[Folded] = asyncio.Queue(_WRITES_MAX)
        self._paused = False
        # Called after each event's facts are stored (for the event-lag histogram of /metrics).
        self.observe_event: Callable[[dict[str, str], datetime], None] = lambda h, at: None

    def put_event(self, event: Event) -> None:
        """Synchronous, only queues (panoramisk's callback); pauses the socket when full."""
        self._items.put_nowait(event)
        if not self._paused and self._items.qsize() >= _QUEUE_HIGH:
            transport = self._transport()
            if transport is not None:
                log.warning("AMI: %d events waiting; pausing the socket", self._items.qsize())
                transport.pause_reading()
                self._paused = True

    def put(self, item: Snapshot | Tick) -> None:
        self._items.put_nowait(item)

    async def join(self) -> None:
        """Wait until every queued event and snapshot has reached the recorder."""
        await self._items.join()

    def resume_reading(self) -> None:
        if self._paused:
            self._paused = False
            transport = self._transport()
            if transport is not None and not transport.is_closing():
                transport.resume_reading()

    async def handle(self, item: Snapshot | Tick) -> None:
        """A snapshot or tick now, once everything folded before it is written."""
        async with self._lock:
            await self._writes.join()
            await self._handle(item)

    async def consume(self) -> None:
        """Fold what is queued in memory and hand its facts to the writer; a snapshot or tick
        waits until everything before it is written, then is handled on its own."""
        while True:
            items = [await self._items.get()]
            while len(items) < _BATCH_MAX and not self._items.empty():
                items.append(self._items.get_nowait())
            async with self._lock:
                folded = Folded()
                for item in items:
                    if isinstance(item, Event):
                        self._fold(item, folded)
                        continue
                    await self._writes.put(folded)
                    folded = Folded()
                    await self._writes.join()
                    try:
                        await self._handle(item)
                    except Exception:
                        log.exception("AMI: could not handle %s", describe(item))
                    finally:
                        self._items.task_done()
                await self._writes.put(folded)
            if self._paused and self._items.qsize() <= _QUEUE_LOW:
                self.resume_reading()

    def _fold(self, item: Event, folded: Folded) -> None:
        try:
            folded.facts += self._flow.feed(item.headers, item.received_at)
        except Exception:
            log.exception("AMI: could not handle %s", describe(item))
        folded.events.append(item)

    async def write(self) -> None:
        """The one writer: what the consumer folded meanwhile goes in one `apply` (one
        transaction: group commit); its events are acknowledged once that returned."""
        while True:
            batch = [await self._writes.get()]
            while not self._writes.empty():
                batch.append(self._writes.get_nowait())
            try:
                await self._sink.apply([fact for folded in batch for fact in folded.facts])
            finally:
                for folded in batch:
                    for event in folded.events:
                        self.observe_event(event.headers, event.received_at)
                        self._items.task_done()
                    self._writes.task_done()

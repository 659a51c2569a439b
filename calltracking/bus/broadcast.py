"""Events copied to the nodes' broadcast queues in few messages: one per run of same-key events
published in one turn of the event loop.

Why: every web node consumes every `lease.*` and `pool.*` event for its tabs (web/app.py), and
each consumed broker message costs a node ~60-90 µs of CPU whatever it holds
(docs/benchmarks.md, "One site on two web nodes"). The relay publishes up to 64 events in one
turn of its loop (bus/relay.py), so one message per run carries tens of them.

Rules:
- `RabbitBus.publish` sends each event on the topic exchange `calltracking` (work queues and
  every consumer outside this program: CONTRACT.md, "Event bus") and adds its body to the
  current round. Broadcast queues bind only to the topic exchange `calltracking.broadcast`,
  which carries the rounds.
- A round is published at the next turn of the loop as one message per run of consecutive
  events with the same key: routing key = that key, body = a JSON array of the events'
  envelopes, in publish order. Runs keep the order: a queue bound to several keys gets its
  events in the order they were published, as with one message per event.
- Each publish waits for its event's confirm and for its round's; a round that fails fails
  every publish in it, so the relay marks nothing whose copy the broker may not have.
- The copies are transient (broadcast queues die with their node anyway).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

from calltracking.bus.base import BusError
from calltracking.core.events import Event

log = logging.getLogger(__name__)

BROADCAST_EXCHANGE = "calltracking.broadcast"
# A round's messages are bounded: a relay window is 64 events, a round of a busy loop more.
MAX_RUN = 256

SendRun = Callable[[str, bytes], Awaitable[None]]


class BroadcastRounds:
    """Collects the events published in one turn of the loop and sends them as runs."""

    def __init__(self, send: SendRun) -> None:
        self._send = send
        self._runs: list[tuple[str, list[bytes]]] = []
        self._done: asyncio.Future[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()

    def add(self, key: str, body: bytes) -> asyncio.Future[None]:
        """Copy one event (`body`: its envelope's JSON) into this turn's round; the future is
        done once the round's messages are confirmed (never cancel it: others share it)."""
        if self._done is None:
            loop = asyncio.get_running_loop()
            self._done = loop.create_future()
            self._done.add_done_callback(_retrieve)
            loop.call_soon(self._flush)
        if self._runs and self._runs[-1][0] == key and len(self._runs[-1][1]) < MAX_RUN:
            self._runs[-1][1].append(body)
        else:
            self._runs.append((key, [body]))
        return self._done

    async def close(self) -> None:
        """Fail the round being collected and stop the ones being sent."""
        if self._done is not None and not self._done.done():
            self._done.set_exception(BusError("the bus closed before its broadcast round left"))
        self._runs, self._done = [], None
        for task in list(self._sending):
            task.cancel()
        if self._sending:
            await asyncio.wait(list(self._sending))

    def _flush(self) -> None:
        runs, done = self._runs, self._done
        self._runs, self._done = [], None
        if done is None or done.done():
            return
        task = asyncio.create_task(self._publish(runs, done), name="bus-broadcast-round")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _publish(
        self, runs: list[tuple[str, list[bytes]]], done: asyncio.Future[None]
    ) -> None:
        try:
            # Started in order on one channel, so they leave in order (bus/relay.py).
            await asyncio.gather(*(self._send(key, encode_run(bodies)) for key, bodies in runs))
        except asyncio.CancelledError:
            if not done.done():
                done.set_exception(BusError("the broadcast round was cancelled"))
            raise
        except Exception as exc:
            if not done.done():
                done.set_exception(BusError(f"broadcast round not confirmed: {exc!r}"))
        else:
            if not done.done():
                done.set_result(None)


def encode_run(bodies: list[bytes]) -> bytes:
    """A JSON array of already encoded envelopes."""
    return b"[" + b",".join(bodies) + b"]"


def decode_run(raw: bytes) -> list[Event]:
    """The events of a broadcast message; ValueError when it is not a non-empty JSON array of
    event envelopes."""
    try:
        items = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(items, list) or not items:
        raise ValueError("not a non-empty array of events")
    try:
        return [Event.from_json(item) for item in items]
    except TypeError as exc:
        raise ValueError(f"not an event envelope: {exc}") from None


def _retrieve(future: asyncio.Future[None]) -> None:
    # Every publish in the round may have given up (its own timeout) before the round failed.
    if not future.cancelled() and future.exception() is not None:
        log.debug("broadcast round failed", exc_info=future.exception())

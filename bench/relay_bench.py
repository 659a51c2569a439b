"""Events through RabbitMQ, both ends: the outbox relay's publishing (events per second and this
process's CPU per event, with one event in flight at a time against several:
`OutboxRelay(in_flight=...)`), then a subscription consuming the backlog this left.

Each run makes a fresh vhost with a durable work queue bound to every event, as the workers'
queues are (so the broker persists each message before it confirms, as in production), and
relays `-n` events from an in-memory outbox through `RabbitBus` until none is pending, in
rounds of `RELAY_BATCH` as `calltracking serve` does. Nobody consumes meanwhile. Then a
`RabbitBus` subscription (the default prefetch) takes the `-n` events off the queue with a
handler that only counts them: its CPU per event is the bus's own cost of consuming under load
(a node consumes every lease event of every node). The windows alternate within each repeat;
the table shows medians.

    python -m bench.relay_bench -n 3000 --in-flight 1 64 --repeat 3 \\
        --amqp-url amqp://guest:guest@127.0.0.1:5672/
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import aio_pika

from bench.common import cpu_seconds, machine, median, quiet_logging, table
from bench.nodes_bench import fresh_vhost
from calltracking.bus.rabbit import RabbitBus
from calltracking.bus.relay import OutboxRelay
from calltracking.core.events import Event, EventKey
from calltracking.serve import RELAY_BATCH

QUEUE = "bench.relay"


class ListOutbox:
    """Pending events in order; marks remove them (the relay's view of the SQL outbox)."""

    def __init__(self, events: Sequence[Event]) -> None:
        self._pending = list(events)

    async def fetch_pending(self, limit: int) -> list[Event]:
        return self._pending[:limit]

    async def mark_published(self, event_ids: Sequence[str]) -> None:
        marked = set(event_ids)
        self._pending = [e for e in self._pending if e.id not in marked]

    @property
    def left(self) -> int:
        return len(self._pending)


def lease_events(count: int) -> list[Event]:
    at = datetime.now(UTC)
    return [
        Event(
            EventKey.LEASE_ASSIGNED,
            secrets.token_hex(16),
            at,
            {"id": secrets.token_hex(8), "site_id": "s1", "number": "+74950000000", "visitor": "v"},
        )
        for _ in range(count)
    ]


async def run_once(amqp_url: str, count: int, in_flight: int) -> dict[str, float]:
    handled = 0
    all_in = asyncio.Event()

    async def handler(_event: Event) -> None:
        nonlocal handled
        handled += 1
        if handled == count:
            all_in.set()

    with fresh_vhost(amqp_url) as url:
        async with RabbitBus(url) as bus:
            # Declared and bound by the bus as a worker's queue is; it outlives this consumer.
            await (await bus.subscribe(QUEUE, ["#"], handler)).close()
            outbox = ListOutbox(lease_events(count))
            relay = OutboxRelay(outbox, bus, batch=RELAY_BATCH, in_flight=in_flight)
            cpu0, begin = cpu_seconds(), time.perf_counter()
            while outbox.left:
                await relay.run_once()
            elapsed, cpu = time.perf_counter() - begin, cpu_seconds() - cpu0
            stored = await _messages_in(url)
            cpu0, begin = cpu_seconds(), time.perf_counter()
            subscription = await bus.subscribe(QUEUE, ["#"], handler)
            await all_in.wait()
            consumed_s, consumed_cpu = time.perf_counter() - begin, cpu_seconds() - cpu0
            await subscription.close()
    return {
        "in flight": in_flight,
        "events/s": count / elapsed,
        "CPU ms/event": 1000 * cpu / count,
        "in the queue": stored,
        "consumed/s": count / consumed_s,
        "consumer CPU ms/event": 1000 * consumed_cpu / count,
    }


async def _messages_in(url: str) -> int:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(QUEUE, passive=True)
        return queue.declaration_result.message_count or 0
    finally:
        await connection.close()


async def main_async(args: argparse.Namespace) -> None:
    rows: dict[int, list[dict[str, float]]] = {k: [] for k in args.in_flight}
    for repeat in range(args.repeat):
        for in_flight in args.in_flight:
            row = await run_once(args.amqp_url, args.n, in_flight)
            rows[in_flight].append(row)
            print(f"run {repeat + 1}: {row}", flush=True)
    base = median([r["events/s"] for r in rows[args.in_flight[0]]])
    lines = []
    for in_flight, runs in rows.items():
        rate = median([r["events/s"] for r in runs])
        cpu = median([r["CPU ms/event"] for r in runs])
        stored = min(r["in the queue"] for r in runs)
        consumed = median([r["consumed/s"] for r in runs])
        consumer_cpu = median([r["consumer CPU ms/event"] for r in runs])
        lines.append([in_flight, rate, cpu, stored, rate / base, consumed, consumer_cpu])
    headers = [
        "in flight",
        "events/s",
        "CPU ms/event",
        "in the queue",
        "x first",
        "consumed/s",
        "consumer CPU ms/event",
    ]
    print(f"relay_bench: median of {args.repeat} runs, -n {args.n}; {machine()}")
    print(table(headers, lines))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=3000, help="events per run")
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--amqp-url", required=True, help="a RabbitMQ server (any vhost)")
    quiet_logging()
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()

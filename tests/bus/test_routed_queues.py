"""Routed queues on the real RabbitMQ (bus/rabbit.py, "Routed queues"): the publisher copies to
such a queue only the events its route takes, so the broker never stores the others there,
while the contract's exchange still carries every event."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Sequence

import aio_pika
import pytest

from calltracking.bus.rabbit import (
    DEAD_LETTER_EXCHANGE,
    EXCHANGE,
    QueueRoute,
    RabbitBus,
)
from calltracking.core.events import Event
from tests.bus import Collector, make_event

pytestmark = pytest.mark.rabbitmq


def qname(role: str) -> str:
    return f"test.{role}.{uuid.uuid4().hex[:8]}"


def kept(event: Event) -> bool:
    return bool(event.data.get("keep"))


@pytest.fixture
async def stack() -> AsyncIterator[contextlib.AsyncExitStack]:
    async with contextlib.AsyncExitStack() as stack:
        yield stack


async def open_bus(
    stack: contextlib.AsyncExitStack, url: str, routes: Sequence[QueueRoute] = ()
) -> RabbitBus:
    bus = RabbitBus(url, routes=routes, reconnect_interval_s=0.2)
    await bus.start()
    stack.push_async_callback(bus.close)
    return bus


async def raw_channel(stack: contextlib.AsyncExitStack, url: str) -> aio_pika.abc.AbstractChannel:
    connection = await aio_pika.connect(url)
    stack.push_async_callback(connection.close)
    return await connection.channel()


async def drain(queue: aio_pika.abc.AbstractQueue) -> list[str]:
    """The ids of every message in `queue`, in order, taken off it."""
    ids = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        ids.append(json.loads(message.body)["id"])
    return ids


async def test_a_routed_queue_holds_only_the_events_its_route_takes(
    stack: contextlib.AsyncExitStack, amqp_url: str
) -> None:
    routed = qname("routed")
    bus = await open_bus(stack, amqp_url, [QueueRoute(routed, ("lease.*",), kept)])
    channel = await raw_channel(stack, amqp_url)
    # An outside consumer of the contract's exchange, as an integrator would bind one.
    everything = await channel.declare_queue(qname("all"), exclusive=True)
    await everything.bind(EXCHANGE, "#")
    events = [make_event("lease.assigned", keep=n % 3 == 0) for n in range(9)]
    events.append(make_event("call.started", keep=True))  # not a key of the route
    for event in events:
        await bus.publish(event)

    # No consumer ever declared the routed queue: the bus did when it started.
    queue = await channel.declare_queue(routed, passive=True)
    assert await drain(queue) == [e.id for e in events if e.key.startswith("lease.") and kept(e)]
    seen: list[str] = []
    async with asyncio.timeout(5):
        while len(seen) < len(events):
            seen.extend(await drain(everything))
            await asyncio.sleep(0.05)
    assert seen == [e.id for e in events]


async def test_subscribing_to_a_routed_queue_removes_the_bindings_of_earlier_versions(
    stack: contextlib.AsyncExitStack, amqp_url: str
) -> None:
    routed = qname("upgraded")
    channel = await raw_channel(stack, amqp_url)
    # What an earlier version left: the same queue, bound to the contract's exchange.
    old = await channel.declare_queue(
        routed, durable=True, arguments={"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE}
    )
    await old.bind(EXCHANGE, "lease.*")
    stack.push_async_callback(old.delete, if_unused=False, if_empty=False)
    bus = await open_bus(stack, amqp_url, [QueueRoute(routed, ("lease.*",), kept)])
    got = Collector()
    await bus.subscribe(routed, ["lease.*"], got)  # no `wants`: it sees all the queue holds
    events = [make_event("lease.assigned", keep=n % 2 == 0) for n in range(6)]
    sentinel = make_event("lease.released", keep=True)
    for event in [*events, sentinel]:
        await bus.publish(event)
    await got.wait_until(lambda: sentinel.id in got.ids)
    # Once each, only those taken: no second copy through the old binding, no refused one.
    assert got.ids == [*(e.id for e in events if kept(e)), sentinel.id]


async def test_a_routed_queue_is_consumed_only_with_its_routes_keys(
    stack: contextlib.AsyncExitStack, amqp_url: str
) -> None:
    routed = qname("strict")
    bus = await open_bus(stack, amqp_url, [QueueRoute(routed, ("lease.*",), kept)])
    with pytest.raises(ValueError, match="routed"):
        await bus.subscribe(routed, ["lease.*", "call.*"], Collector())
    with pytest.raises(ValueError, match="routed"):
        await bus.subscribe(routed, ["lease.*"], Collector(), durable=False)

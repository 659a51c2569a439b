"""Broadcast queues get the events of a turn of the loop in few messages (bus/broadcast.py), on
the machine's real RabbitMQ: in publish order, each event handled once, a poison event retried
and dead-lettered by itself."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import aio_pika
import pytest
from hypothesis import given
from hypothesis import strategies as st

from calltracking.bus.base import BusError
from calltracking.bus.broadcast import BROADCAST_EXCHANGE, BroadcastRounds, decode_run, encode_run
from calltracking.bus.rabbit import ATTEMPTS_HEADER, EXCHANGE, RabbitBus
from tests.bus import Collector, make_event
from tests.bus.test_rabbit_bus import qname, read_dead_letters


@pytest.fixture
async def stack() -> AsyncIterator[contextlib.AsyncExitStack]:
    async with contextlib.AsyncExitStack() as stack:
        yield stack


async def open_bus(stack: contextlib.AsyncExitStack, url: str, max_attempts: int = 5) -> RabbitBus:
    bus = RabbitBus(url, max_attempts=max_attempts, reconnect_interval_s=0.2)
    await bus.start()
    stack.push_async_callback(bus.close)
    return bus


async def raw_queue(
    stack: contextlib.AsyncExitStack, url: str, exchange: str, key: str
) -> aio_pika.abc.AbstractQueue:
    connection = await aio_pika.connect(url)
    stack.push_async_callback(connection.close)
    channel = await connection.channel()
    queue = await channel.declare_queue(qname("raw"), exclusive=True)
    await queue.bind(exchange, key)
    return queue


async def drain(
    queue: aio_pika.abc.AbstractQueue, count: int
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    messages: list[aio_pika.abc.AbstractIncomingMessage] = []
    async with asyncio.timeout(10):
        while len(messages) < count:
            message = await queue.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.02)
            else:
                messages.append(message)
    return messages


@pytest.mark.rabbitmq
async def test_one_turn_of_publishes_reaches_broadcast_queues_as_one_message_per_run(
    stack: contextlib.AsyncExitStack, amqp_url: str
) -> None:
    bus = await open_bus(stack, amqp_url)
    copies = await raw_queue(stack, amqp_url, BROADCAST_EXCHANGE, "#")
    singles = await raw_queue(stack, amqp_url, EXCHANGE, "#")
    keys = ["lease.assigned"] * 5 + ["pool.exhausted"] * 2 + ["lease.assigned"] * 3
    events = [make_event(key, i=i) for i, key in enumerate(keys)]
    await asyncio.gather(*(bus.publish(event) for event in events))  # as the relay's window

    messages = await drain(copies, 3)
    assert [m.routing_key for m in messages] == [
        "lease.assigned",
        "pool.exhausted",
        "lease.assigned",
    ]
    assert [[e["id"] for e in json.loads(m.body)] for m in messages] == [
        [e.id for e in events[:5]],
        [e.id for e in events[5:7]],
        [e.id for e in events[7:]],
    ]
    assert all(m.delivery_mode == aio_pika.DeliveryMode.NOT_PERSISTENT for m in messages)
    # The contract's exchange still carries one persistent message per event.
    assert [m.message_id for m in await drain(singles, len(events))] == [e.id for e in events]
    assert await copies.get(no_ack=True, fail=False) is None


@pytest.mark.rabbitmq
async def test_a_broadcast_subscription_handles_each_event_once_in_publish_order(
    stack: contextlib.AsyncExitStack, amqp_url: str
) -> None:
    publisher, node = await open_bus(stack, amqp_url), await open_bus(stack, amqp_url)
    got = Collector()
    await node.subscribe(
        None, ["lease.#", "pool.#"], got, wants=lambda e: e.data.get("skip") is not True
    )
    keys = ["lease.assigned", "pool.exhausted", "call.started", "lease.released"] * 6
    events = [make_event(key, skip=i == 3) for i, key in enumerate(keys)]
    await asyncio.gather(*(publisher.publish(event) for event in events[:12]))
    for event in events[12:]:  # one event a round
        await publisher.publish(event)
    await asyncio.gather(*(publisher.publish(event) for event in events[:4]))  # a relay's repeat
    expected = [e.id for e in events if not e.key.startswith("call.") and e.data["skip"] is False]
    await got.wait_until(lambda: got.ids == expected)
    await asyncio.sleep(0.2)  # the repeated round has had time to arrive
    assert got.calls == expected


@pytest.mark.rabbitmq
async def test_a_poison_event_leaves_its_broadcast_message_and_is_dead_lettered_alone(
    stack: contextlib.AsyncExitStack, amqp_url: str
) -> None:
    bus = await open_bus(stack, amqp_url, max_attempts=3)
    events = [make_event("lease.assigned", i=i) for i in range(5)]
    poison = events[2]
    got = Collector(fail_ids=[poison.id])
    await bus.subscribe(None, ["lease.#"], got)
    await asyncio.gather(*(bus.publish(event) for event in events))

    dead = await read_dead_letters(amqp_url, {poison.id})
    good = [e.id for e in events if e is not poison]
    await got.wait_until(lambda: got.ids == good)
    assert got.calls.count(poison.id) == 3
    assert sorted(got.calls) == sorted([*good, poison.id, poison.id, poison.id])
    assert [e["id"] for e in json.loads(dead[poison.id].body)] == [poison.id]
    assert dead[poison.id].headers[ATTEMPTS_HEADER] == 2  # the third failure rejected it


async def test_a_round_is_one_send_per_run_and_its_failure_fails_every_publish_in_it() -> None:
    sent: list[tuple[str, list[str]]] = []
    failing = False

    async def send(key: str, body: bytes) -> None:
        sent.append((key, [e.id for e in decode_run(body)]))
        if failing:
            raise ConnectionError("broker away")

    rounds = BroadcastRounds(send)
    events = [make_event(key) for key in ("a.b", "a.b", "c.d", "a.b")]
    body = {e.id: json.dumps(e.to_json()).encode() for e in events}
    await asyncio.gather(*(rounds.add(e.key, body[e.id]) for e in events))
    assert sent == [
        ("a.b", [events[0].id, events[1].id]),
        ("c.d", [events[2].id]),
        ("a.b", [events[3].id]),
    ]

    failing = True
    futures = [rounds.add(e.key, body[e.id]) for e in events[:2]]
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(r, BusError) for r in results)

    failing = False
    pending = rounds.add("a.b", body[events[0].id])
    await rounds.close()  # before the turn that would send it
    with pytest.raises(BusError):
        await pending


@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_a_broadcast_body_is_a_run_of_events_or_a_value_error(raw: bytes) -> None:
    try:
        events = decode_run(raw)
    except ValueError:
        return
    assert events
    assert decode_run(encode_run([json.dumps(e.to_json()).encode() for e in events])) == events


@given(
    st.lists(
        st.one_of(
            st.none(),
            st.integers(),
            st.text(max_size=5),
            st.lists(st.integers(), max_size=2),
            st.fixed_dictionaries(
                {"event": st.text(max_size=5), "id": st.text(max_size=5)},
                optional={
                    "occurred_at": st.text(max_size=30) | st.integers(),
                    "data": st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
                    | st.text(max_size=3),
                },
            ),
        ),
        max_size=4,
    )
)
def test_almost_envelopes_in_a_run_are_refused_with_a_value_error(items: list[object]) -> None:
    try:
        events = decode_run(json.dumps(items).encode())
    except ValueError:
        return
    assert len(events) == len(items)

"""The in-process bus and the outbox relay over it: no broker, no sleeping."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Collection
from datetime import UTC, datetime, timedelta, timezone, tzinfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calltracking.bus import BusError, MemoryBus, OutboxRelay, SeenIds
from calltracking.bus.base import topic_matches
from calltracking.core.events import Event, EventKey
from tests.bus import Collector, MemoryOutbox, RecordingBus, make_event


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("call.*", "call.started", True),
        ("call.*", "call.started.late", False),
        ("call.*", "call", False),
        ("*.ended", "call.ended", True),
        ("*.ended", "lease.released", False),
        ("lease.#", "lease", True),
        ("lease.#", "lease.released", True),
        ("lease.#", "lease.released.revoked", True),
        ("lease.#", "leases.released", False),
        ("#", "pool.exhausted", True),
        ("#.released", "lease.released", True),
        ("call.#.ended", "call.ended", True),
        ("call.#.ended", "call.x.y.ended", True),
        ("call.started", "call.started", True),
        ("call.started", "call.ended", False),
    ],
)
def test_topic_matching_follows_amqp(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected


def test_seen_ids_is_a_bounded_lru() -> None:
    seen = SeenIds(2)
    assert seen.add("a")
    assert seen.add("b")
    assert not seen.add("a")  # refreshes "a"
    assert seen.add("c")  # evicts "b", the least recently seen
    assert "a" in seen
    assert "c" in seen
    assert "b" not in seen
    assert len(seen) == 2


async def test_events_of_a_change_arrive_once_at_a_bound_queue() -> None:
    bus = MemoryBus()
    got = Collector()
    await bus.subscribe("analytics", ["call.*"], got)
    change = [make_event(k) for k in ("call.started", "call.answered", "call.ended")]
    for event in [*change, make_event("lease.assigned")]:
        await bus.publish(event)
    await bus.join()
    assert got.ids == [e.id for e in change]
    assert got.events[0] == change[0]
    assert got.events[0] is not change[0]
    await bus.close()


async def test_shared_queue_splits_work_and_broadcast_queues_each_get_all() -> None:
    bus = MemoryBus()
    workers = [Collector(), Collector()]
    nodes = [Collector(), Collector()]
    for worker in workers:
        await bus.subscribe("work", ["lease.#"], worker)
    for node in nodes:
        sub = await bus.subscribe(None, ["lease.#"], node)
        assert sub.queue.startswith("broadcast.")
    events = [make_event("lease.assigned") for _ in range(20)]
    for event in events:
        await bus.publish(event)
    await bus.join()
    ids = [e.id for e in events]
    assert sorted(workers[0].ids + workers[1].ids) == sorted(ids)
    assert workers[0].ids
    assert workers[1].ids
    assert nodes[0].ids == ids
    assert nodes[1].ids == ids
    await bus.close()


async def test_failing_handler_retries_then_dead_letters_without_blocking_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = MemoryBus(max_attempts=3)
    poison, *good = [make_event("call.ended") for _ in range(4)]
    got = Collector(fail_ids=[poison.id])
    await bus.subscribe("export", ["call.#"], got)
    with caplog.at_level(logging.WARNING, logger="calltracking.bus.memory"):
        for event in [poison, *good]:
            await bus.publish(event)
        await bus.join()
    assert got.ids == [e.id for e in good]
    assert got.calls.count(poison.id) == 3
    assert [(d.event.id, d.attempts, d.queue) for d in bus.dead_letters] == [
        (poison.id, 3, "export")
    ]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert poison.id in errors[0].getMessage()
    await bus.close()


async def test_flaky_handler_succeeds_on_retry() -> None:
    bus = MemoryBus(max_attempts=3)
    event = make_event("call.started")
    calls: list[str] = []

    async def flaky(e: Event) -> None:
        calls.append(e.id)
        if len(calls) < 3:
            raise RuntimeError("downstream hiccup")

    await bus.subscribe("q", ["call.*"], flaky)
    await bus.publish(event)
    await bus.join()
    assert calls == [event.id] * 3
    assert bus.dead_letters == []
    await bus.close()


async def test_a_subscription_skips_event_ids_it_already_handled() -> None:
    bus = MemoryBus()
    got = Collector()
    await bus.subscribe("q", ["call.*"], got)
    event = make_event("call.ended")
    await bus.publish(event)
    await bus.publish(event)  # the relay re-published a row whose mark was lost
    await bus.join()
    assert got.calls == [event.id]
    await bus.close()


async def test_durable_queue_keeps_events_while_no_one_consumes() -> None:
    bus = MemoryBus()
    first = await bus.subscribe("kept", ["call.*"], Collector())
    transient = await bus.subscribe("gone", ["call.*"], Collector(), durable=False)
    await first.close()
    await transient.close()
    event = make_event("call.started")
    await bus.publish(event)
    later, again = Collector(), Collector()
    await bus.subscribe("kept", ["pool.*"], later)
    await bus.subscribe("gone", ["pool.*"], again)
    await bus.join()
    assert later.ids == [event.id]
    assert again.ids == []
    await bus.close()


async def test_an_event_every_consumer_of_a_queue_refuses_never_enters_it() -> None:
    bus = MemoryBus()
    picky, plain, also_picky = Collector(), Collector(), Collector()
    asked: list[str] = []

    def wants(event: Event) -> bool:
        asked.append(event.id)
        return bool(event.data.get("wanted"))

    await bus.subscribe("picky", ["call.*"], picky, wants=wants)
    await bus.subscribe(None, ["call.*"], plain)
    kept, dropped = make_event("call.started", wanted=True), make_event("call.started")
    for event in (kept, dropped):
        await bus.publish(event)
    await bus.join()
    assert picky.ids == [kept.id]
    assert plain.ids == [kept.id, dropped.id]  # a consumer without `wants` takes everything
    assert asked == [kept.id, dropped.id]
    # A second consumer of the queue without `wants` makes it take everything again.
    await bus.subscribe("picky", ["call.*"], also_picky)
    await bus.publish(third := make_event("call.started"))
    await bus.join()
    assert sorted(picky.ids + also_picky.ids) == sorted([kept.id, third.id])
    await bus.close()


async def test_wanted_says_whether_any_queue_would_take_an_event() -> None:
    bus = MemoryBus()
    assert not bus.wanted(make_event("call.started"))  # nothing bound: dropped if published
    hooks = await bus.subscribe("hooks", ["call.*"], Collector(), wants=lambda e: "url" in e.data)
    assert not bus.wanted(make_event("call.started"))
    assert bus.wanted(make_event("call.started", url="https://x.example/"))
    assert not bus.wanted(make_event("lease.assigned", url="https://x.example/"))  # not bound
    await hooks.close()
    # A durable queue without a consumer keeps every event for the next one.
    assert bus.wanted(make_event("call.started"))
    later = Collector()
    await bus.subscribe("hooks", ["call.*"], later, wants=lambda e: False)
    assert not bus.wanted(make_event("call.started"))
    await bus.close()


async def test_closing_mid_handler_returns_the_event_to_its_queue() -> None:
    bus = MemoryBus()
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(_: Event) -> None:
        started.set()
        await release.wait()

    sub = await bus.subscribe("q", ["call.*"], slow)
    event = make_event("call.started")
    await bus.publish(event)
    await started.wait()
    await sub.close()
    got = Collector()
    await bus.subscribe("q", ["call.*"], got)
    await bus.join()
    assert got.ids == [event.id]
    await bus.close()


async def test_closed_bus_refuses_work_and_bad_payloads_fail_early() -> None:
    bus = MemoryBus()
    with pytest.raises(TypeError):
        await bus.publish(make_event("call.started", when=datetime.now()))
    with pytest.raises(ValueError, match="keys"):
        await bus.subscribe("q", "call.*", Collector())
    await bus.close()
    with pytest.raises(BusError):
        await bus.publish(make_event("call.started"))
    with pytest.raises(BusError):
        await bus.subscribe(None, ["call.*"], Collector())


class FailingAfter(RecordingBus):
    """Confirms `ok` publishes, then the broker is 'away'."""

    def __init__(self, ok: int) -> None:
        super().__init__(MemoryBus())
        self.ok = ok

    async def publish(self, event: Event) -> None:
        if len(self.confirmed) >= self.ok:
            raise BusError("broker away")
        await super().publish(event)


async def test_relay_publishes_in_order_and_marks_only_confirmed() -> None:
    events = [make_event("call.started") for _ in range(7)]
    outbox = MemoryOutbox(events)
    flaky = FailingAfter(ok=3)
    assert await OutboxRelay(outbox, flaky, batch=5).run_once() == 3
    assert outbox.published == [e.id for e in events[:3]]
    assert outbox.pending == [e.id for e in events[3:]]

    # A new relay (a restart) over the same outbox publishes only what was not confirmed.
    fresh = RecordingBus(MemoryBus())
    relay = OutboxRelay(outbox, fresh, batch=5)
    assert await relay.run_once() == 4
    assert await relay.run_once() == 0
    assert fresh.confirmed == [e.id for e in events[3:]]
    assert outbox.published == [e.id for e in events]


class SlowConfirms(RecordingBus):
    """Confirms each publish after a delay that shrinks with its position (so later events of a
    window confirm first), except the ids in `refused`; records how many were in flight."""

    def __init__(self, refused: Collection[str] = ()) -> None:
        super().__init__(MemoryBus())
        self.refused = refused
        self.sent: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def publish(self, event: Event) -> None:
        self.sent.append(event.id)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.001 * (10 - len(self.sent) % 10))
            if event.id in self.refused:
                raise BusError("nack")
            await super().publish(event)
        finally:
            self.in_flight -= 1


async def test_relay_with_confirms_in_flight_sends_in_order_and_marks_all() -> None:
    events = [make_event("lease.assigned", i=i) for i in range(25)]
    outbox = MemoryOutbox(events)
    bus = SlowConfirms()
    assert await OutboxRelay(outbox, bus, batch=25, in_flight=8).run_once() == 25
    assert bus.sent == [e.id for e in events]
    assert bus.most_in_flight == 8
    assert outbox.published == [e.id for e in events]


async def test_relay_with_confirms_in_flight_marks_nothing_from_the_first_failure_on() -> None:
    """Events after a refused one that the broker did confirm stay pending too: they are sent
    again next round (consumers deduplicate), and no later window is sent."""
    events = [make_event("call.started", i=i) for i in range(20)]
    outbox = MemoryOutbox(events)
    bus = SlowConfirms(refused={events[5].id})
    assert await OutboxRelay(outbox, bus, batch=20, in_flight=8).run_once() == 5
    assert outbox.published == [e.id for e in events[:5]]
    assert bus.sent == [e.id for e in events[:8]]  # the first window only
    assert set(bus.confirmed) == {e.id for e in events[:8]} - {events[5].id}

    bus.refused = set()
    assert await OutboxRelay(outbox, bus, batch=20, in_flight=8).run_once() == 15
    assert outbox.published == [e.id for e in events]


class OutboxFailingOnce(MemoryOutbox):
    failed = False

    async def fetch_pending(self, limit: int) -> list[Event]:
        if not self.failed:
            self.failed = True
            raise ConnectionError("database restarting")
        return await super().fetch_pending(limit)


async def test_relay_run_drains_backlog_survives_failed_rounds_and_stops() -> None:
    events = [make_event("lease.assigned") for _ in range(5)]
    outbox = OutboxFailingOnce(events)
    bus = RecordingBus(MemoryBus())
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(OutboxRelay(outbox, bus, batch=2).run(0.01, stop))
        await outbox.wait_until(lambda: not outbox.pending, within_s=5)
        stop.set()
    assert bus.confirmed == [e.id for e in events]


async def test_relay_warns_once_per_outage(caplog: pytest.LogCaptureFixture) -> None:
    outbox = MemoryOutbox([make_event("call.started") for _ in range(2)])
    broken = FailingAfter(ok=0)
    relay = OutboxRelay(outbox, broken)
    with caplog.at_level(logging.DEBUG, logger="calltracking.bus.relay"):
        for _ in range(3):
            assert await relay.run_once() == 0
        broken.ok = 10
        assert await relay.run_once() == 2
    levels = [r.levelname for r in caplog.records]
    assert levels == ["WARNING", "DEBUG", "DEBUG", "INFO"]


_plain = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
_any_json = st.recursive(
    _plain,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.text(max_size=8), _any_json | st.sampled_from([EventKey.LEASE_ASSIGNED])),
    st.sampled_from([UTC, timezone(timedelta(hours=3))]),
)
def test_each_queue_gets_what_a_json_round_trip_gives(data: dict[str, object], tz: tzinfo) -> None:
    """Flat events are copied without the round trip (memory.py): what a subscriber gets is
    still exactly what crossing a broker would give, in value and in type, and its own."""
    event = Event("lease.assigned", "e1", datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=tz), data)
    crossed = Event.from_json(json.loads(json.dumps(event.to_json())))
    got = asyncio.run(_deliver_twice(event))
    for copy in got:
        assert copy == crossed or _nan_in(data)
        assert copy.occurred_at.tzinfo == crossed.occurred_at.tzinfo
        assert [type(v) for v in copy.data.values()] == [type(v) for v in crossed.data.values()]
        assert type(copy.key) is type(crossed.key) and type(copy.id) is type(crossed.id)
    first, second = got
    assert first.data is not second.data and first.data is not event.data
    first.data["changed"] = True  # type: ignore[index]
    assert "changed" not in second.data and "changed" not in event.data


def _nan_in(value: object) -> bool:
    if isinstance(value, float):
        return value != value
    if isinstance(value, dict):
        return any(_nan_in(v) for v in value.values())
    if isinstance(value, list):
        return any(_nan_in(v) for v in value)
    return False


async def _deliver_twice(event: Event, first_queue_keys: str = "lease.*") -> list[Event]:
    bus = MemoryBus()
    got: list[Event] = []

    async def handler(e: Event) -> None:
        got.append(e)

    await bus.subscribe("a", [first_queue_keys], handler)
    await bus.subscribe("b", ["#"], handler)
    await bus.publish(event)
    await bus.join()
    await bus.close()
    return got


def _types(value: object) -> object:
    """The value's shape with every leaf replaced by its type, dicts' keys kept in order."""
    if isinstance(value, dict):
        return [(type(k), k, _types(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value)


def _containers(value: object) -> list[object]:
    if isinstance(value, dict):
        return [value, *(c for v in value.values() for c in _containers(v))]
    if isinstance(value, list):
        return [value, *(c for v in value for c in _containers(v))]
    return []


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.text(max_size=8),
        _any_json | st.sampled_from([EventKey.LEASE_ASSIGNED, (1, 2)]) | st.just({1: "a"}),
    ),
    st.sampled_from([UTC, timezone(timedelta(hours=3))]),
)
def test_nested_data_reaches_each_queue_as_a_json_round_trip_gives_it(
    data: dict[str, object], tz: tzinfo
) -> None:
    """Nested payloads (call.started's attribution) are copied without the round trip too: every
    level has the round trip's values and types, and every dict and list is each queue's own."""
    event = Event("call.started", "e1", datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=tz), data)
    crossed = Event.from_json(json.loads(json.dumps(event.to_json())))
    got = asyncio.run(_deliver_twice(event, "call.*"))
    for copy in got:
        assert copy == crossed or _nan_in(data)
        assert _types(copy.data) == _types(crossed.data)
        assert copy.occurred_at.tzinfo == crossed.occurred_at.tzinfo
    first, second = got
    ids = {id(c) for c in _containers(second.data)} | {id(c) for c in _containers(data)}
    assert not any(id(c) in ids for c in _containers(first.data))

"""Webhook deliveries from the bus: signed so a receiver can verify them, retried after a 500,
logged per call, and never delivered twice for a redelivered event."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestServer

from calltracking.bus.memory import MemoryBus
from calltracking.bus.relay import OutboxRelay
from calltracking.core.events import Event
from calltracking.core.settings import Analytics, WebhookTarget
from calltracking.exporters.outcome import backoff_delay
from calltracking.exporters.targets import webhook_session
from calltracking.exporters.webhooks import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify,
)
from calltracking.store.db import Database
from calltracking.store.exports.webhook_deliveries import deliveries_for_call
from calltracking.store.outbox import SqlOutbox
from calltracking.store.sites import Site
from calltracking.store.webhook_sites import WebhookSites
from calltracking.workers import webhooks
from calltracking.workers.webhooks import WebhookDispatcher
from tests.workers.seed import CALL_AT, Clock, Tracked, seed_tracked

NOW = CALL_AT + timedelta(minutes=2)
SECRET = "whsec-0123456789abcdef"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # The receiver listens on 127.0.0.1, which only an operator's allowance lets through.
    async with webhook_session(allow_private=True) as session:
        yield session


@dataclass
class Receiver:
    """A site owner's endpoint: checks each signature as a receiver would, answers `statuses`."""

    clock: Clock
    statuses: list[int] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    verified: list[bool] = field(default_factory=list)

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.verified.append(
            verify(
                SECRET,
                request.headers.get(TIMESTAMP_HEADER),
                request.headers.get(SIGNATURE_HEADER),
                body,
                self.clock(),
            )
        )
        envelope = json.loads(body)
        assert request.headers[DELIVERY_HEADER] == envelope["id"]
        self.received.append(envelope)
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)


@dataclass
class Setup:
    tracked: Tracked
    receiver: Receiver
    clock: Clock
    http: aiohttp.ClientSession

    def dispatcher(self) -> WebhookDispatcher:
        return WebhookDispatcher(self.tracked.db, self.http, self.clock, jitter=lambda: 0.0)

    async def events(self) -> list[Event]:
        return await SqlOutbox(self.tracked.db).fetch_pending(100)


async def _setup(
    db: Database, http: aiohttp.ClientSession, events: tuple[str, ...]
) -> AsyncIterator[Setup]:
    clock = Clock(NOW)
    receiver = Receiver(clock)
    app = web.Application()
    app.router.add_post("/hooks/calls", receiver.hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        url = str(server.make_url("/hooks/calls"))
        hook = WebhookTarget(url=url, events=events, secret=SECRET)
        tracked = await seed_tracked(db, Analytics(webhooks=(hook,)))
        yield Setup(tracked, receiver, clock, http)
    finally:
        await server.close()


@pytest.fixture
async def setup(sqlite_db: Database, http: aiohttp.ClientSession) -> AsyncIterator[Setup]:
    async for value in _setup(sqlite_db, http, ("call.*",)):
        yield value


@pytest.fixture
async def ended_only(sqlite_db: Database, http: aiohttp.ClientSession) -> AsyncIterator[Setup]:
    async for value in _setup(sqlite_db, http, ("call.ended",)):
        yield value


async def test_events_from_the_bus_arrive_signed_and_are_logged_per_call(setup: Setup) -> None:
    call_id = await setup.tracked.call()
    bus = MemoryBus()
    dispatcher = setup.dispatcher()
    await bus.subscribe(webhooks.QUEUE, webhooks.KEYS, dispatcher.handle)
    try:
        await OutboxRelay(SqlOutbox(setup.tracked.db), bus).run_once()
        await bus.join()
    finally:
        await bus.close()
    assert [e["event"] for e in setup.receiver.received] == [
        "call.started",
        "call.answered",
        "call.ended",
    ]
    assert setup.receiver.verified == [True, True, True]
    assert {e["data"]["id"] for e in setup.receiver.received} == {call_id}
    async with setup.tracked.db.read() as conn:
        log = await deliveries_for_call(conn, call_id)
    assert [(d.event_key, d.state, d.attempts) for d in log] == [
        ("call.started", "delivered", 1),
        ("call.answered", "delivered", 1),
        ("call.ended", "delivered", 1),
    ]
    assert bus.dead_letters == []


async def test_a_500_is_retried_with_back_off_and_the_log_shows_the_attempts(
    ended_only: Setup,
) -> None:
    setup = ended_only
    call_id = await setup.tracked.call()
    setup.receiver.statuses = [500]
    dispatcher = setup.dispatcher()
    for event in await setup.events():
        await dispatcher.handle(event)  # only call.ended is subscribed
    async with setup.tracked.db.read() as conn:
        (first,) = await deliveries_for_call(conn, call_id)
    assert (first.event_key, first.state, first.attempts) == ("call.ended", "pending", 1)
    assert first.last_error is not None and "HTTP 500" in first.last_error
    due = NOW + timedelta(seconds=backoff_delay(1, jitter=0.0))
    assert first.next_attempt_at == due
    assert await dispatcher.run_once(due - timedelta(seconds=1)) == {}
    setup.clock.now = due
    assert await setup.dispatcher().run_once(due) == {"delivered": 1}  # read back from the outbox
    async with setup.tracked.db.read() as conn:
        (done,) = await deliveries_for_call(conn, call_id)
    assert (done.state, done.attempts, done.next_attempt_at) == ("delivered", 2, None)
    assert done.last_error is not None and "HTTP 500" in done.last_error  # the failed attempt
    assert setup.receiver.verified == [True, True]
    assert setup.receiver.received[0] == setup.receiver.received[1]  # the same body again


async def test_a_redelivered_event_is_not_delivered_twice(ended_only: Setup) -> None:
    setup = ended_only
    call_id = await setup.tracked.call()
    (ended,) = [e for e in await setup.events() if e.key == "call.ended"]
    await setup.dispatcher().handle(ended)
    await setup.dispatcher().handle(ended)  # a redelivery, to another node's worker even
    bus = MemoryBus()
    await bus.subscribe(webhooks.QUEUE, webhooks.KEYS, setup.dispatcher().handle)
    try:
        await bus.publish(ended)
        await bus.join()
    finally:
        await bus.close()
    assert len(setup.receiver.received) == 1
    async with setup.tracked.db.read() as conn:
        assert len(await deliveries_for_call(conn, call_id)) == 1


async def test_a_hopeless_answer_fails_the_delivery_without_retry(ended_only: Setup) -> None:
    setup = ended_only
    call_id = await setup.tracked.call()
    setup.receiver.statuses = [410]
    for event in await setup.events():
        await setup.dispatcher().handle(event)
    assert await setup.dispatcher().run_once(NOW + timedelta(days=1)) == {}
    async with setup.tracked.db.read() as conn:
        (delivery,) = await deliveries_for_call(conn, call_id)
    assert (delivery.state, delivery.attempts) == ("failed", 1)
    assert len(setup.receiver.received) == 1


async def test_a_loopback_target_is_a_failed_delivery_with_the_reason_logged(
    ended_only: Setup,
) -> None:
    setup = ended_only
    call_id = await setup.tracked.call()
    async with webhook_session(allow_private=False) as guarded:
        dispatcher = WebhookDispatcher(setup.tracked.db, guarded, setup.clock, jitter=lambda: 0.0)
        for event in await setup.events():
            await dispatcher.handle(event)
        assert await dispatcher.run_once(NOW + timedelta(days=1)) == {}  # not retried
    async with setup.tracked.db.read() as conn:
        (delivery,) = await deliveries_for_call(conn, call_id)
    assert (delivery.state, delivery.attempts) == ("failed", 1)
    assert delivery.last_error is not None
    assert "target refused" in delivery.last_error
    assert "loopback" in delivery.last_error
    assert setup.receiver.received == []


async def test_events_no_webhook_wants_cost_one_site_read_and_no_write(ended_only: Setup) -> None:
    setup = ended_only
    reads: list[str] = []
    writes: list[int] = []

    class Counting(WebhookSites):
        async def _read(self, site_id: str) -> Site | None:
            reads.append(site_id)
            return await super()._read(site_id)

    sa.event.listen(setup.tracked.db.engine.sync_engine, "begin", lambda conn: writes.append(1))
    dispatcher = WebhookDispatcher(
        setup.tracked.db,
        setup.http,
        setup.clock,
        jitter=lambda: 0.0,
        sites=Counting(setup.tracked.db),
    )
    site_id = setup.tracked.site.id
    for n in range(20):  # a lease storm: the hook only wants call.ended
        event = Event(key="lease.assigned", id=f"e{n}", occurred_at=NOW, data={"site_id": site_id})
        await dispatcher.handle(event)
    assert reads == [site_id]
    assert writes == []
    assert setup.receiver.received == []


async def test_the_bus_is_told_early_which_events_no_webhook_of_a_known_site_wants(
    ended_only: Setup,
) -> None:
    """`wants` (bus/base.py) refuses only what `handle` would drop: an event of a site the
    dispatcher remembers with no webhook for that key. A site it does not remember yet, or an
    event one of its webhooks subscribed to, is wanted."""
    setup = ended_only
    dispatcher = setup.dispatcher()
    site_id = setup.tracked.site.id

    def event(key: str, site: object = site_id) -> Event:
        return Event(key=key, id=f"{key}-{site}", occurred_at=NOW, data={"site_id": site})

    assert dispatcher.wants(event("lease.assigned"))  # not read yet: it cannot tell
    await dispatcher.handle(event("lease.assigned"))  # now it has read the site
    assert not dispatcher.wants(event("lease.assigned"))
    assert not dispatcher.wants(event("call.started"))
    assert dispatcher.wants(event("call.ended"))  # the site's webhook takes call.ended
    assert dispatcher.wants(event("call.ended", site="another-site"))
    assert not dispatcher.wants(event("call.ended", site=None))  # no site: `accept` drops it

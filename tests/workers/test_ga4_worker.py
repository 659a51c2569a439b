"""The GA4 exporter against the strict local fake: once per call, retried with back-off, never
resent after a recorded send, skipped when too old, and the API's retry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import aiohttp
import pytest

from calltracking.core.errors import Conflict, NotFound
from calltracking.core.settings import Analytics, Ga4Target
from calltracking.exporters.outcome import MAX_ATTEMPTS, backoff_delay
from calltracking.store.db import Database
from calltracking.store.exports.rows import retry_export
from calltracking.workers.ga4 import Ga4Exporter
from tests.exporters.fake_ga4 import FakeGa4, running
from tests.workers.seed import (
    CALL_AT,
    GA_CLIENT_ID,
    Clock,
    Tracked,
    export_of,
    seed_tracked,
    set_attempts,
)

NOW = CALL_AT + timedelta(minutes=5)
SECRET = "s3cret-api"


@dataclass
class Setup:
    tracked: Tracked
    fake: FakeGa4
    clock: Clock
    endpoint: str
    http: aiohttp.ClientSession

    def worker(self, *, timeout_s: float = 10.0, batch: int = 50) -> Ga4Exporter:
        return Ga4Exporter(
            self.tracked.db,
            self.endpoint,
            self.http,
            jitter=lambda: 0.0,
            timeout_s=timeout_s,
            batch=batch,
        )


@pytest.fixture
async def setup(sqlite_db: Database, http: aiohttp.ClientSession) -> AsyncIterator[Setup]:
    clock = Clock(NOW)
    fake = FakeGa4(api_secret=SECRET, clock=clock)
    tracked = await seed_tracked(sqlite_db, Analytics(ga4=Ga4Target("G-TEST1234", SECRET)))
    async with running(fake) as endpoint:
        yield Setup(tracked, fake, clock, endpoint, http)


async def test_a_tracked_call_is_sent_once_and_marked_sent(setup: Setup) -> None:
    call_id = await setup.tracked.call()
    counts = await setup.worker().run_once(NOW)
    assert counts == {"sent": 1}
    assert setup.fake.refused == []  # the fake rejects nothing our builder produces
    (hit,) = setup.fake.received
    assert hit["client_id"] == GA_CLIENT_ID
    (event,) = hit["events"]
    assert event["name"] == "phone_call"
    assert event["params"]["source"] == "google"
    assert event["params"]["talk_s"] == 60
    row = await export_of(setup.tracked.db, call_id, "ga4")
    assert (row.state, row.attempts, row.next_attempt_at) == ("sent", 1, None)
    assert await setup.worker().run_once(NOW + timedelta(hours=1)) == {}
    assert setup.fake.hits == 1


async def test_a_new_worker_after_a_send_does_not_resend(setup: Setup) -> None:
    calls = [await setup.tracked.call() for _ in range(3)]
    assert await setup.worker().run_once(NOW) == {"sent": 3}
    for later in (NOW, NOW + timedelta(minutes=10), NOW + timedelta(hours=2)):
        assert await setup.worker().run_once(later) == {}  # a restart: a new worker object
    assert setup.fake.hits == len(calls) == len(setup.fake.received)


async def test_racing_workers_send_each_call_once(setup: Setup) -> None:
    for _ in range(5):
        await setup.tracked.call()
    results = await asyncio.gather(*(setup.worker(batch=2).run_once(NOW) for _ in range(4)))
    assert sum(counts["sent"] for counts in results) == 5
    assert setup.fake.hits == 5


@pytest.mark.postgres
async def test_racing_workers_on_postgres_send_each_call_once(
    pg_db: Database, http: aiohttp.ClientSession
) -> None:
    fake = FakeGa4(api_secret=SECRET, clock=Clock(NOW))
    tracked = await seed_tracked(pg_db, Analytics(ga4=Ga4Target("G-TEST1234", SECRET)))
    for _ in range(6):
        await tracked.call()
    async with running(fake) as endpoint:
        workers = [Ga4Exporter(pg_db, endpoint, http, batch=2) for _ in range(4)]
        results = await asyncio.gather(*(w.run_once(NOW) for w in workers))
    assert sum(counts["sent"] for counts in results) == 6
    assert fake.hits == 6


async def test_500s_are_retried_with_growing_back_off_until_accepted(setup: Setup) -> None:
    call_id = await setup.tracked.call()
    setup.fake.mode = "error500"
    worker = setup.worker()
    now, delays = NOW, []
    for attempt in (1, 2, 3):
        assert await worker.run_once(now) == {"pending": 1}
        row = await export_of(setup.tracked.db, call_id, "ga4")
        assert row.attempts == attempt
        assert row.last_error is not None and "HTTP 500" in row.last_error
        assert row.next_attempt_at is not None
        delays.append(row.next_attempt_at - now)
        assert await worker.run_once(row.next_attempt_at - timedelta(seconds=1)) == {}
        now = setup.clock.now = row.next_attempt_at
    assert delays == [timedelta(seconds=backoff_delay(a, jitter=0.0)) for a in (1, 2, 3)]
    assert delays[0] < delays[1] < delays[2]
    setup.fake.mode = "ok"
    assert await worker.run_once(now) == {"sent": 1}
    assert setup.fake.hits == 4
    assert len(setup.fake.received) == 1


async def test_a_timeout_is_retried_later(setup: Setup) -> None:
    call_id = await setup.tracked.call()
    setup.fake.mode, setup.fake.slow_s = "slow", 5.0
    assert await setup.worker(timeout_s=0.2).run_once(NOW) == {"pending": 1}
    row = await export_of(setup.tracked.db, call_id, "ga4")
    assert row.last_error is not None and "no answer" in row.last_error
    assert row.next_attempt_at is not None and row.next_attempt_at > NOW


async def test_retries_end_in_failed_after_max_attempts(setup: Setup) -> None:
    call_id = await setup.tracked.call()
    await set_attempts(setup.tracked.db, call_id, "ga4", MAX_ATTEMPTS - 1)
    setup.fake.mode = "error500"
    assert await setup.worker().run_once(NOW) == {"failed": 1}
    row = await export_of(setup.tracked.db, call_id, "ga4")
    assert (row.state, row.attempts, row.next_attempt_at) == ("failed", MAX_ATTEMPTS, None)


async def test_a_hopeless_4xx_fails_at_once_without_retry(setup: Setup) -> None:
    call_id = await setup.tracked.call()
    setup.fake.api_secret = "another-secret"  # the site's secret is now wrong: 403
    assert await setup.worker().run_once(NOW) == {"failed": 1}
    row = await export_of(setup.tracked.db, call_id, "ga4")
    assert (row.state, row.attempts, row.next_attempt_at) == ("failed", 1, None)
    assert row.last_error is not None and "HTTP 403" in row.last_error
    assert SECRET not in row.last_error
    assert await setup.worker().run_once(NOW + timedelta(days=1)) == {}
    assert setup.fake.hits == 1


async def test_a_call_older_than_72_hours_is_skipped_without_a_hit(setup: Setup) -> None:
    call_id = await setup.tracked.call()
    later = CALL_AT + timedelta(hours=72, seconds=1)
    assert await setup.worker().run_once(later) == {"skipped": 1}
    row = await export_of(setup.tracked.db, call_id, "ga4")
    assert row.state == "skipped"
    assert row.last_error == "older than 72 hours"
    assert setup.fake.hits == 0


async def test_retry_export_puts_a_failed_export_back_and_refuses_a_sent_one(
    setup: Setup,
) -> None:
    db = setup.tracked.db
    failed, sent = await setup.tracked.call(), await setup.tracked.call()
    setup.fake.api_secret = "another-secret"
    assert await setup.worker().run_once(NOW) == {"failed": 2}
    setup.fake.api_secret = SECRET
    async with db.write() as conn:
        row = await retry_export(conn, failed, "ga4", NOW + timedelta(minutes=1))
    assert (row.state, row.attempts, row.last_error) == ("pending", 0, None)
    assert await setup.worker().run_once(NOW + timedelta(minutes=1)) == {"sent": 1}
    assert (await export_of(db, failed, "ga4")).state == "sent"
    with pytest.raises(Conflict):
        async with db.write() as conn:
            await retry_export(conn, failed, "ga4", NOW)
    assert (await export_of(db, sent, "ga4")).state == "failed"
    with pytest.raises(NotFound):
        async with db.write() as conn:
            await retry_export(conn, sent, "facebook", NOW)
    with pytest.raises(NotFound):
        async with db.write() as conn:
            await retry_export(conn, "no-such-call", "ga4", NOW)


async def test_a_removed_target_leaves_the_export_not_configured(setup: Setup) -> None:
    from calltracking.store import schema as t
    from calltracking.store.sites import get_site

    call_id = await setup.tracked.call()
    db = setup.tracked.db
    async with db.write() as conn:
        site = await get_site(conn, setup.tracked.site.id)
        assert site is not None
        await conn.execute(
            t.sites.update()
            .where(t.sites.c.id == site.id)
            .values(settings={"analytics": {"ga4": None}})
        )
    assert await setup.worker().run_once(NOW) == {"not_configured": 1}
    assert (await export_of(db, call_id, "ga4")).state == "not_configured"
    assert setup.fake.hits == 0


async def test_a_round_with_nothing_due_takes_no_writer_turn(setup: Setup) -> None:
    # The process's writer turn held elsewhere (as a FastAGI call-start batch holds it): a round
    # with nothing due ends without waiting for it; one with an export due waits for it.
    db = setup.tracked.db
    async with db.writer_turn():
        assert await asyncio.wait_for(setup.worker().run_once(NOW), 5) == {}
    await setup.tracked.call()
    async with db.writer_turn():
        pending = asyncio.create_task(setup.worker().run_once(NOW))
        for _ in range(50):
            await asyncio.sleep(0.001)
        assert not pending.done()
    assert await asyncio.wait_for(pending, 5) == {"sent": 1}

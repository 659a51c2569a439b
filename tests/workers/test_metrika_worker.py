"""The Metrika exporter against the strict local fake: one upload per site and round, quota
back-off, status polls, the extended threshold switched on once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import aiohttp
import pytest

from calltracking.core.settings import Analytics, MetrikaTarget
from calltracking.exporters.outcome import backoff_delay
from calltracking.store.db import Database
from calltracking.workers.metrika import MetrikaExporter
from tests.exporters.fake_metrika import FakeMetrika, running
from tests.workers.seed import CALL_AT, YM_CLIENT_ID, Clock, Tracked, export_of, seed_tracked

NOW = CALL_AT + timedelta(minutes=5)
POLL_S = 60.0
COUNTER, TOKEN = "12345678", "y0_oauth-token"


@dataclass
class Setup:
    tracked: Tracked
    fake: FakeMetrika
    clock: Clock
    endpoint: str
    http: aiohttp.ClientSession

    def worker(self) -> MetrikaExporter:
        return MetrikaExporter(
            self.tracked.db, self.endpoint, self.http, poll_s=POLL_S, jitter=lambda: 0.0
        )


async def _setup(
    db: Database, http: aiohttp.ClientSession, target: MetrikaTarget
) -> AsyncIterator[Setup]:
    clock = Clock(NOW)
    fake = FakeMetrika(counter_id=COUNTER, token=TOKEN, clock=clock)
    tracked = await seed_tracked(db, Analytics(metrika=target))
    async with running(fake) as endpoint:
        yield Setup(tracked, fake, clock, endpoint, http)


@pytest.fixture
async def setup(sqlite_db: Database, http: aiohttp.ClientSession) -> AsyncIterator[Setup]:
    async for value in _setup(sqlite_db, http, MetrikaTarget(COUNTER, TOKEN)):
        yield value


@pytest.fixture
async def extended(sqlite_db: Database, http: aiohttp.ClientSession) -> AsyncIterator[Setup]:
    target = MetrikaTarget(COUNTER, TOKEN, extended_threshold=True)
    async for value in _setup(sqlite_db, http, target):
        yield value


async def test_several_calls_go_in_one_upload(setup: Setup) -> None:
    calls = [await setup.tracked.call(CALL_AT + timedelta(seconds=i)) for i in range(3)]
    counts = await setup.worker().run_once(NOW)
    assert counts == {"sent": 3, "uploads": 1}
    assert setup.fake.refusals == []  # header, rows and OAuth as the fake checks them
    (upload,) = setup.fake.uploads
    assert upload["line_quantity"] == 3
    assert {row["ClientId"] for row in upload["rows"]} == {YM_CLIENT_ID}
    assert [row["TalkDuration"] for row in upload["rows"]] == ["60", "60", "60"]
    for call_id in calls:
        row = await export_of(setup.tracked.db, call_id, "metrika")
        assert row.state == "sent"
        assert row.detail == "upload 1 UPLOADED (0 polls)"
        assert row.next_attempt_at == NOW + timedelta(seconds=POLL_S)
    assert await setup.worker().run_once(NOW) == {}  # a new worker uploads nothing again
    assert len(setup.fake.uploads) == 1


async def test_a_wrong_token_fails_the_batch(setup: Setup) -> None:
    call_id = await setup.tracked.call()
    setup.fake.token = "another-token"
    assert await setup.worker().run_once(NOW) == {"failed": 1}
    row = await export_of(setup.tracked.db, call_id, "metrika")
    assert row.last_error is not None and "HTTP 401" in row.last_error
    assert TOKEN not in row.last_error


@pytest.mark.parametrize("mode", ["quota429", "quota420"])
async def test_quota_answers_back_off_and_the_batch_stays_together(setup: Setup, mode: str) -> None:
    calls = [await setup.tracked.call(CALL_AT + timedelta(seconds=i)) for i in range(2)]
    setup.fake.mode = mode
    worker = setup.worker()
    assert await worker.run_once(NOW) == {"pending": 2}
    due = NOW + timedelta(seconds=backoff_delay(1, jitter=0.0))
    for call_id in calls:
        row = await export_of(setup.tracked.db, call_id, "metrika")
        assert (row.state, row.attempts, row.next_attempt_at) == ("pending", 1, due)
        assert row.last_error is not None and mode[-3:] in row.last_error
    assert await worker.run_once(due - timedelta(seconds=1)) == {}
    assert setup.fake.hits == 1
    setup.fake.mode = "ok"
    assert await worker.run_once(due) == {"sent": 2, "uploads": 1}
    assert len(setup.fake.uploads) == 1
    assert setup.fake.uploads[0]["line_quantity"] == 2


async def test_the_upload_status_is_polled_until_processed(setup: Setup) -> None:
    call_id = await setup.tracked.call()
    worker = setup.worker()
    await worker.run_once(NOW)
    assert setup.fake.uploads[0]["status"] == "UPLOADED"
    assert await worker.run_once(NOW + timedelta(seconds=POLL_S - 1)) == {}
    assert await worker.run_once(NOW + timedelta(seconds=POLL_S)) == {"polls": 1}
    assert setup.fake.uploads[0]["status"] == "PROCESSED"
    row = await export_of(setup.tracked.db, call_id, "metrika")
    assert (row.state, row.detail, row.next_attempt_at) == (
        "sent",
        "upload 1 PROCESSED (1 polls)",
        None,
    )
    hits = setup.fake.hits
    assert await worker.run_once(NOW + timedelta(days=1)) == {}
    assert setup.fake.hits == hits


async def test_a_call_older_than_21_days_is_skipped(setup: Setup) -> None:
    call_id = await setup.tracked.call()
    assert await setup.worker().run_once(CALL_AT + timedelta(days=21, seconds=1)) == {"skipped": 1}
    row = await export_of(setup.tracked.db, call_id, "metrika")
    assert (row.state, row.last_error) == ("skipped", "older than 21 days")
    assert setup.fake.hits == 0


async def test_the_extended_threshold_is_switched_on_once(extended: Setup) -> None:
    assert await extended.worker().run_once(NOW) == {"threshold_enabled": 1}
    assert extended.fake.extended_threshold
    assert await extended.worker().run_once(NOW) == {}  # a restart remembers it
    assert extended.fake.hits == 1
    await extended.tracked.call()
    assert await extended.worker().run_once(NOW) == {"sent": 1, "uploads": 1}
    assert extended.fake.hits == 2


async def test_the_threshold_is_asked_again_after_a_quota_answer(extended: Setup) -> None:
    extended.fake.mode = "quota429"
    worker = extended.worker()
    assert await worker.run_once(NOW) == {}
    assert not extended.fake.extended_threshold
    extended.fake.mode = "ok"
    assert await worker.run_once(NOW) == {"threshold_enabled": 1}

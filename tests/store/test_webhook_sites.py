"""What the webhook dispatcher and the bus's route to its queue ask of every event
(store/webhook_sites.py): never a wait, a site read once in the background, and True whenever
the answer is not known yet."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from calltracking.core.events import Event
from calltracking.core.settings import Analytics, WebhookTarget
from calltracking.store.db import Database
from calltracking.store.sites import Site
from calltracking.store.webhook_sites import MAX_LEARNING, WebhookSites
from tests.store.seed import seed_site

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
HOOK = WebhookTarget(url="https://hooks.example/in", events=("call.ended",), secret="s" * 16)


def event(key: str, site_id: object) -> Event:
    return Event(key=key, id=f"{key}-{site_id}", occurred_at=NOW, data={"site_id": site_id})


async def test_a_site_not_known_yet_is_wanted_then_told_apart_once_read(
    sqlite_db: Database,
) -> None:
    hooked = await seed_site(sqlite_db, analytics=Analytics(webhooks=(HOOK,)))
    plain = await seed_site(sqlite_db, name="plain", domains=("plain.example",), defaults_base=8000)
    reads: list[str] = []
    read = asyncio.Event()

    class Counted(WebhookSites):
        async def _read(self, site_id: str) -> Site | None:
            reads.append(site_id)
            site = await super()._read(site_id)
            read.set()  # the cache keeps the site in the same step, before a waiter runs
            return site

    sites = Counted(sqlite_db)
    # What the relay's bus does: only ask. The read runs in the background.
    assert sites.wants(event("lease.assigned", plain.id))
    assert sites.wants(event("lease.released", plain.id))
    await read.wait()
    assert not sites.wants(event("lease.assigned", plain.id))
    assert reads == [plain.id]
    # What the dispatcher does: ask, then look the site up, which joins the read started.
    assert sites.wants(event("lease.assigned", hooked.id))
    assert await sites.site(hooked.id) == hooked
    assert reads == [plain.id, hooked.id]
    assert not sites.wants(event("lease.assigned", hooked.id))
    assert sites.wants(event("call.ended", hooked.id))  # the key its webhook subscribed to
    assert not sites.wants(event("call.ended", plain.id))


async def test_an_event_without_a_site_is_never_wanted(sqlite_db: Database) -> None:
    sites = WebhookSites(sqlite_db)
    assert not sites.wants(event("lease.assigned", None))
    assert not sites.wants(event("lease.assigned", 42))
    assert not sites.wants(Event(key="call.ended", id="x", occurred_at=NOW, data={}))


async def test_a_failed_read_leaves_the_sites_events_wanted_and_is_tried_again(
    sqlite_db: Database,
) -> None:
    plain = await seed_site(sqlite_db)
    reads: list[str] = []

    class Flaky(WebhookSites):
        async def _read(self, site_id: str) -> Site | None:
            reads.append(site_id)
            if len(reads) == 1:
                raise ConnectionError("database away")
            return await super()._read(site_id)

    sites = Flaky(sqlite_db)
    assert sites.wants(event("lease.assigned", plain.id))
    with pytest.raises(ConnectionError):
        await sites.site(plain.id)  # shares the background read, which fails
    await asyncio.sleep(0)  # the background task ends too
    assert sites.wants(event("lease.assigned", plain.id))  # still unknown: wanted, read again
    assert await sites.site(plain.id) == plain
    assert not sites.wants(event("lease.assigned", plain.id))
    assert reads == [plain.id, plain.id]


async def test_unknown_sites_are_read_a_bounded_number_at_a_time_and_close_stops_them(
    sqlite_db: Database,
) -> None:
    started: list[str] = []
    cancelled: list[str] = []
    never, all_started = asyncio.Event(), asyncio.Event()

    class Stuck(WebhookSites):
        async def _read(self, site_id: str) -> Site | None:
            started.append(site_id)
            if len(started) == MAX_LEARNING:
                all_started.set()
            try:
                await never.wait()
            except asyncio.CancelledError:
                cancelled.append(site_id)
                raise
            return None

    sites = Stuck(sqlite_db)
    for n in range(MAX_LEARNING * 2):
        assert sites.wants(event("lease.assigned", f"site-{n}"))
        assert sites.wants(event("lease.assigned", f"site-{n}"))  # one read per site
    async with asyncio.timeout(5):
        await all_started.wait()
    await asyncio.sleep(0.05)  # time for more to start, were they not bounded
    assert len(started) == MAX_LEARNING
    await sites.close()
    assert sorted(cancelled) == sorted(started)

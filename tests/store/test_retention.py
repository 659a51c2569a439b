"""Calls and recordings older than the account's retention are deleted with a log line; newer
ones and other accounts' stay."""

from __future__ import annotations

import logging
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from calltracking.core.kinds import CallStatus
from calltracking.core.records import CallKey
from calltracking.store import retention
from calltracking.store.calls import SqlCallRecorder
from calltracking.store.db import Database
from calltracking.store.retention import purge_expired
from calltracking.store.schema import (
    accounts,
    calls,
    leases,
    outbox,
    visitors,
    visits,
    webhook_deliveries,
)
from calltracking.store.sites import Site, move_from_reserve
from tests.store.seed import T0, numbers, seed_site
from tests.support.fixtures import ASTERISK

MONITOR = "/var/spool/asterisk/monitor"


async def _call(db: Database, linkedid: str, at_days_ago: int, recordings: Path) -> None:
    recorder = SqlCallRecorder(db)
    at = T0 - timedelta(days=at_days_ago)
    key = CallKey("asterisk", linkedid)
    await recorder.start_call(key, numbers(1)[0], "+79161234567", at)
    await recorder.end_call(key, at + timedelta(seconds=30), CallStatus.ANSWERED)
    await recorder.name_recording(key, f"{MONITOR}/{linkedid}.wav")
    shutil.copy(ASTERISK / "recording_example.wav", recordings / f"{linkedid}.wav")
    await recorder.confirm_recording(key, 32364)


async def _site_keeping_30_days(db: Database, pool: int = 1) -> Site:
    """A site whose account keeps 30 days, with `pool` numbers in its pool since long ago."""
    site = await seed_site(db, reserve=2)
    async with db.write() as conn:
        await conn.execute(
            accounts.update().where(accounts.c.id == site.account_id).values(retention_days=30)
        )
        await move_from_reserve(
            conn,
            site,
            count=None,
            wanted=numbers(pool),
            account_capacity=5,
            now=T0 - timedelta(days=90),
        )
    return site


async def test_old_calls_and_recordings_go_and_recent_ones_stay(
    sqlite_db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await _site_keeping_30_days(sqlite_db)
    await _call(sqlite_db, "old.1", 31, tmp_path)
    await _call(sqlite_db, "new.1", 29, tmp_path)
    with caplog.at_level(logging.INFO, logger="calltracking.store.retention"):
        purged = await purge_expired(sqlite_db, tmp_path, MONITOR, T0)
    assert (purged.calls, purged.recordings) == (1, 1)
    async with sqlite_db.read() as conn:
        left = (await conn.execute(sa.select(calls.c.linkedid))).scalars().all()
    assert left == ["new.1"]
    assert not (tmp_path / "old.1.wav").exists()
    assert (tmp_path / "new.1.wav").exists()
    assert "retention: deleted 1 calls, 1 recordings" in caplog.text
    again = await purge_expired(sqlite_db, tmp_path, MONITOR, T0)
    assert again.calls == 0


async def test_calls_of_no_account_follow_the_default_retention(
    sqlite_db: Database, tmp_path: Path
) -> None:
    await seed_site(sqlite_db, reserve=2)
    await _call(sqlite_db, "stray.1", 366, tmp_path)
    await _call(sqlite_db, "stray.2", 364, tmp_path)
    purged = await purge_expired(sqlite_db, tmp_path, MONITOR, T0)
    assert purged.calls == 1
    async with sqlite_db.read() as conn:
        left = (await conn.execute(sa.select(calls.c.linkedid))).scalars().all()
    assert left == ["stray.2"]


async def test_a_long_backlog_goes_in_bounded_transactions_and_keeps_what_an_open_lease_needs(
    any_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first purge after a retention was shortened: more old rows than a batch, each batch
    its own write transaction, and a visit an open lease points to kept however the batches
    fall (it must not stop the walk through the visits after it)."""
    monkeypatch.setattr(retention, "BATCH", 2)
    site = await _site_keeping_30_days(any_db, pool=2)
    for n in range(5):
        await _call(any_db, f"old.{n}", 40 + n, tmp_path)
    await _call(any_db, "new.1", 1, tmp_path)
    old, recent = T0 - timedelta(days=45), T0 - timedelta(days=1)
    visitor = {"id": "v" * 32, "site_id": site.id, "wants_number": False, "bot": False}
    async with any_db.write() as conn:
        await conn.execute(
            visitors.insert().values(
                **visitor, created_at=old, last_seen_at=old, last_activity_at=old
            )
        )
        for n in range(7):
            await conn.execute(
                visits.insert().values(
                    id=f"{n:032d}",
                    visitor_id=visitor["id"],
                    site_id=site.id,
                    started_at=old,
                    last_seen_at=recent if n == 6 else old,
                    source="google",
                    medium="cpc",
                    tracked=True,
                    got_number=True,
                )
            )
        # The whole first batch is still open leases' visits: the walk must get past it.
        for n, number in enumerate(numbers(2)):
            await conn.execute(
                leases.insert().values(
                    id=f"l{n:031d}",
                    site_id=site.id,
                    number=number,
                    visitor_id=visitor["id"],
                    visit_id=f"{n:032d}",
                    assigned_at=old,
                )
            )
    statements: list[str] = []
    commits: list[int] = []
    engine = any_db.engine.sync_engine
    sa.event.listen(engine, "commit", lambda conn: commits.append(1))
    sa.event.listen(
        engine, "before_cursor_execute", lambda *args: statements.append(" ".join(args[2].split()))
    )

    purged = await purge_expired(any_db, tmp_path, MONITOR, T0)

    assert (purged.calls, purged.recordings, purged.visits) == (5, 5, 4)
    async with any_db.read() as conn:
        left_calls = (await conn.execute(sa.select(calls.c.linkedid))).scalars().all()
        left_visits = (
            (await conn.execute(sa.select(visits.c.id).order_by(visits.c.id))).scalars().all()
        )
    assert left_calls == ["new.1"]
    assert left_visits == [f"{0:032d}", f"{1:032d}", f"{6:032d}"]
    # Calls in batches of 2, 2 and 1; visits in 2 (both kept), 2 and 2; each batch committed.
    assert sum(s.startswith("DELETE FROM calls") for s in statements) == 3
    assert sum(s.startswith("DELETE FROM visits") for s in statements) == 3
    assert len(commits) >= 6


async def test_old_events_and_deliveries_go_unless_a_retry_still_needs_them(
    any_db: Database, tmp_path: Path
) -> None:
    site = await _site_keeping_30_days(any_db)
    await _call(any_db, "old.1", 40, tmp_path)
    async with any_db.read() as conn:
        old_call = (await conn.execute(sa.select(calls.c.id))).scalar_one()
    long_ago, lately = T0 - timedelta(days=40), T0 - timedelta(days=1)
    async with any_db.write() as conn:
        await conn.execute(outbox.delete())  # what the call above wrote: published below
        for name, occurred, published in [
            ("old", long_ago, long_ago),
            ("recent", lately, lately),
            ("unsent", long_ago, None),
            ("retried", long_ago, long_ago),
        ]:
            await conn.execute(
                outbox.insert().values(
                    event_id=f"e-{name}",
                    key="lease.assigned",
                    payload={"event": "lease.assigned", "id": f"e-{name}", "data": {}},
                    occurred_at=occurred,
                    published_at=published,
                )
            )
        for n, (event, call_id, state, updated) in enumerate(
            [
                ("e-call", old_call, "delivered", long_ago),  # goes with its call
                ("e-old", None, "delivered", long_ago),
                ("e-failed", None, "failed", long_ago),
                ("e-retried", None, "pending", long_ago),  # still being retried: stays
                ("e-recent", None, "delivered", lately),
            ]
        ):
            await conn.execute(
                webhook_deliveries.insert().values(
                    id=n + 1,
                    site_id=site.id,
                    call_id=call_id,
                    event_id=event,
                    event_key="lease.assigned",
                    url="https://hooks.example/in",
                    state=state,
                    attempts=1,
                    updated_at=updated,
                )
            )

    purged = await purge_expired(any_db, tmp_path, MONITOR, T0)

    async with any_db.read() as conn:
        events = (await conn.execute(sa.select(outbox.c.event_id))).scalars().all()
        left = (await conn.execute(sa.select(webhook_deliveries.c.event_id))).scalars().all()
    assert sorted(events) == ["e-recent", "e-retried", "e-unsent"]
    assert purged.events == 1
    assert sorted(left) == ["e-recent", "e-retried"]
    assert purged.calls == 1

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
from calltracking.store.calls import SqlCallRecorder
from calltracking.store.db import Database
from calltracking.store.retention import purge_expired
from calltracking.store.schema import accounts, calls
from calltracking.store.sites import move_from_reserve
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


async def test_old_calls_and_recordings_go_and_recent_ones_stay(
    sqlite_db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    site = await seed_site(sqlite_db, reserve=2)
    async with sqlite_db.write() as conn:
        await conn.execute(
            accounts.update().where(accounts.c.id == site.account_id).values(retention_days=30)
        )
        await move_from_reserve(
            conn,
            site,
            count=None,
            wanted=numbers(1),
            account_capacity=5,
            now=T0 - timedelta(days=60),
        )
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

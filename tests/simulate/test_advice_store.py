"""Advice read from SQLite and PostgreSQL alike: the traffic of test_advice_api (pool of 2,
three visitors, the third on `untracked`; both calls tracked only with 3 numbers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from calltracking.advise import site_advice
from calltracking.core.kinds import CallStatus
from calltracking.core.records import CallKey
from calltracking.store.calls import SqlCallRecorder
from calltracking.store.db import Database
from calltracking.store.deciders import DeciderService
from calltracking.store.visitors import Hello
from tests.store.seed import DESKTOP_UA, seed_site


async def test_advice_from_either_database(any_db: Database) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    t0 = now - timedelta(hours=2)
    site = await seed_site(any_db, reserve=3, pool_max=2)
    service = DeciderService(any_db, "n1", "7")
    shown = []
    for minute in range(3):
        hello = Hello(url="https://shop.example/", referrer="", user_agent=DESKTOP_UA)
        welcome = await service.hello(site, hello, t0 + timedelta(minutes=minute))
        shown.append(welcome.shown.e164)
    recorder = SqlCallRecorder(any_db)
    for n, (number, minute) in enumerate(((shown[2], 5), (shown[0], 10))):
        key = CallKey("asterisk", f"1700000000.{n}")
        at = t0 + timedelta(minutes=minute)
        await recorder.start_call(key, number, f"+7916000000{n}", at)
        await recorder.end_call(key, at + timedelta(seconds=30), CallStatus.ANSWERED)

    answer = await site_advice(any_db, site, target=0.95, days=1, now=now)
    assert (answer["traffic"]["visits"], answer["traffic"]["calls_replayed"]) == (3, 2)
    assert answer["current"]["tracked_share"] == 0.5
    assert (answer["advice"]["pool"], answer["advice"]["correct_share"]) == (3, 1.0)

"""A site with analytics targets, a tracked visitor, and calls to the visitor's number."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from calltracking.core.kinds import CallStatus, DisplayKind
from calltracking.core.records import CallKey
from calltracking.core.settings import Analytics
from calltracking.store import schema as t
from calltracking.store.calls import SqlCallRecorder
from calltracking.store.db import Database
from calltracking.store.deciders import DeciderService
from calltracking.store.exports.rows import ExportRow, exports_for_call
from calltracking.store.sites import Site
from calltracking.store.visitors import Hello
from tests.store.seed import DESKTOP_UA, T0, seed_site

GA_COOKIE = "GA1.1.1234567890.1700000000"
GA_CLIENT_ID = "1234567890.1700000000"
YM_CLIENT_ID = "1700000000123456789"
LANDING = "https://shop.example/landing?utm_source=google&utm_medium=cpc&utm_campaign=spring"
#: When the calls of `Tracked.call` start (the visit began at T0).
CALL_AT = T0 + timedelta(minutes=5)


@dataclass
class Tracked:
    db: Database
    site: Site
    number: str
    calls: int = 0

    async def call(self, at: datetime = CALL_AT, *, talk_s: int = 60) -> str:
        """A call to the visitor's number: rings 5 s, talks `talk_s`, ends; its id."""
        self.calls += 1
        recorder = SqlCallRecorder(self.db)
        key = CallKey("asterisk", f"1764064800.{self.calls}")
        resolution = await recorder.start_call(key, self.number, f"+7916123450{self.calls}", at)
        await recorder.answer_call(key, at + timedelta(seconds=5), "PJSIP/operator-1")
        await recorder.end_call(key, at + timedelta(seconds=5 + talk_s), CallStatus.ANSWERED)
        return resolution.call_id


async def seed_tracked(db: Database, analytics: Analytics) -> Tracked:
    site = await seed_site(db, reserve=3, pool_max=3, analytics=analytics)
    visitors = DeciderService(db, node_id="node-1", country_code="7")
    hello = Hello(
        url=LANDING,
        referrer="",
        ga=GA_COOKIE,
        ga_session=str(int(T0.timestamp())),
        ym=YM_CLIENT_ID,
        user_agent=DESKTOP_UA,
    )
    welcome = await visitors.hello(site, hello, T0)
    assert welcome.shown.kind is DisplayKind.DYNAMIC
    return Tracked(db, site, welcome.shown.e164)


async def export_of(db: Database, call_id: str, target: str) -> ExportRow:
    async with db.read() as conn:
        (row,) = [r for r in await exports_for_call(conn, call_id) if r.target == target]
    return row


async def set_attempts(db: Database, call_id: str, target: str, attempts: int) -> None:
    async with db.write() as conn:
        await conn.execute(
            t.exports.update()
            .where(t.exports.c.call_id == call_id, t.exports.c.target == target)
            .values(attempts=attempts)
        )


class Clock:
    """A settable clock the fakes and the workers share."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

"""The real PBX adapters in front of the real store, over real TCP on 127.0.0.1.

- AMI: the fake Asterisk of tests/ami (it answers Login, Ping and CoreShowChannels like Asterisk
  and then writes a recorded transcript) feeds a real `AmiListener` whose recorder is
  `SqlCallRecorder`. A `GatedSession` holds its transcript back until the test opens the gate, so
  a test can let the AGI report first while the listener is already logged in, as in production.
- FastAGI: the transcript-driven Asterisk client of tests/agi talks to a real `AgiServer`.
- The recorded DIDs are rewritten in the bytes to numbers of the test's own site, so one capture
  can be a call to a leased, default, pool, static or unknown number.
- Times: the store takes them from the adapters' clocks; `StepClock` gives every reading its own
  moment (`step_s` later than the one before), so call times are ordered and durations are not
  all zero however fast the machine replays, and a test can move it on between two reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from agi import AgiServer
from ami_listener import AmiListener, Timings
from calltracking.store import schema as t
from calltracking.store.calls import SqlCallRecorder
from calltracking.store.db import Database
from calltracking.store.deciders import DeciderService
from calltracking.store.sites import Site, move_from_reserve
from calltracking.store.visitors import Hello, Welcome
from tests.agi.test_agi_server import asterisk, linkedid_reply
from tests.agi.test_agi_server import load as load_fastagi
from tests.ami.test_listener import FAST, FakeAsterisk, Session, after_login, running
from tests.ami.transcripts import fixtures_dir, load
from tests.store.seed import DESKTOP_UA, seed_site

PBX = "pbx1"
MONITOR = "/var/spool/asterisk/monitor"
OPERATOR = "Local/operator@operators"
CAPTURED_CALLER = "+79161234567"
LANDING = "https://shop.example/?utm_source=yandex&utm_medium=cpc&utm_campaign=spring"
# Small real waits. recording_wait_s is clock time: with `StepClock` a bare-header WAV is given up
# within a second of real time, and a real one is confirmed by two equal polls before that.
TIMINGS = dataclasses.replace(FAST, recording_wait_s=2)

# `any_db` with the PostgreSQL case marked `postgres` (the shared fixture's params carry no mark).
BOTH_DATABASES = pytest.mark.parametrize(
    "any_db",
    [
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ],
    indirect=True,
)


class StepClock:
    """A clock whose every reading is `step_s` after the previous one."""

    def __init__(self, start: datetime, step_s: float = 0.05) -> None:
        self.now = start
        self.step = timedelta(seconds=step_s)

    def __call__(self) -> datetime:
        moment = self.now
        self.now += self.step
        return moment

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def epoch_of(linkedid: str) -> datetime:
    """A Linkedid is `<epoch>.<sequence>`: when Asterisk created the call's first channel."""
    return datetime.fromtimestamp(int(linkedid.split(".")[0]), UTC)


def digits(e164: str) -> str:
    """The number as the capture's trunk sent it (`+74951110001` -> `74951110001`)."""
    return e164.removeprefix("+")


# -- the site, its visitor and numbers ---------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Scene:
    """A seeded site and one visitor who was shown (leased) a pool number at `hello_at`."""

    db: Database
    site: Site
    visitors: DeciderService
    welcome: Welcome
    hello_at: datetime

    @property
    def leased(self) -> str:
        return self.welcome.shown.e164

    def default(self, kind: str) -> str:
        return next(n for k, n in self.site.defaults.items() if str(k) == kind)

    async def lease_id(self) -> str:
        async with self.db.read() as conn:
            value = await conn.scalar(
                sa.select(t.leases.c.id).where(
                    t.leases.c.visitor_id == self.welcome.visitor_id,
                    t.leases.c.number == self.leased,
                )
            )
        assert isinstance(value, str)
        return value

    async def close_tab(self, at: datetime) -> None:
        """The visitor closes their only tab: the lease ends at `at` and the hold starts."""
        w = self.welcome
        await self.visitors.tab_closed(self.site, w.visitor_id, w.tab_id, at)

    async def add_to_pool(self, e164: str, at: datetime) -> None:
        async with self.db.write() as conn:
            moved = await move_from_reserve(
                conn, self.site, count=None, wanted=[e164], account_capacity=50, now=at
            )
        assert moved == [e164]


async def seed_scene(db: Database, hello_at: datetime, **settings: Any) -> Scene:
    """`seed_site` (5 reserve numbers; `settings` are SiteSettings fields), then one visitor
    arriving from a yandex/cpc/spring ad at `hello_at` is leased a number."""
    site = await seed_site(db, reserve=5, **settings)
    visitors = DeciderService(db, "node-1", "7")
    welcome = await visitors.hello(
        site, Hello(url=LANDING, referrer="", user_agent=DESKTOP_UA), hello_at
    )
    assert str(welcome.shown.kind) == "dynamic", welcome.shown
    return Scene(db, site, visitors, welcome, hello_at)


# -- the AMI side --------------------------------------------------------------------------------
@dataclass
class GatedSession(Session):
    """A session whose transcript is written only once `gate` is set."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)


class GatedAsterisk(FakeAsterisk):
    @staticmethod
    async def _stream(writer: asyncio.StreamWriter, session: Session) -> None:
        if isinstance(session, GatedSession):
            await session.gate.wait()
        await FakeAsterisk._stream(writer, session)


def ami_transcript(name: str, rewrite: Mapping[str, str]) -> list[bytes]:
    """The messages Asterisk sent after the login, with numbers rewritten (E.164 -> E.164)."""
    blocks = after_login(load(name))
    for old, new in rewrite.items():
        blocks = [b.replace(digits(old).encode(), digits(new).encode()) for b in blocks]
    return blocks


def linkedid_of(name: str) -> str:
    return next(m["Linkedid"] for m in load(name).events if m.get("Event") == "Newchannel")


def listener(
    port: int,
    recorder: SqlCallRecorder,
    recordings: Path,
    clock: Callable[[], datetime],
    timings: Timings = TIMINGS,
) -> AmiListener:
    return AmiListener(
        host="127.0.0.1",
        port=port,
        username="tracker",
        secret="tracker",
        pbx_id=PBX,
        trunk_contexts=["from-trunk"],
        country_code="7",
        recordings_dir=recordings,
        asterisk_monitor_dir=MONITOR,
        stale_call_s=14_400,
        recorder=recorder,
        timings=timings,
        clock=clock,
    )


@contextlib.asynccontextmanager
async def ami(
    sessions: list[Session], db: Database, recordings: Path, clock: Callable[[], datetime]
) -> AsyncIterator[tuple[GatedAsterisk, AmiListener]]:
    """A fake Asterisk and a running listener logged in to it (the reconcile done)."""
    server = GatedAsterisk(sessions)
    async with server:
        ami_listener = listener(server.port, SqlCallRecorder(db), recordings, clock)
        async with running(ami_listener):
            await until(lambda: server.actions[:2] == ["Login", "CoreShowChannels"])
            yield server, ami_listener


async def replayed(ami_listener: AmiListener, linkedid: str) -> None:
    """Wait until the listener has followed the call to its last Hangup, handed every fact to
    the store, and confirmed or given up its recording (for replays that change nothing the
    store could be polled for)."""
    flow = ami_listener.flow

    def over() -> bool:
        return len(flow) >= 1 and all(k.linkedid != linkedid for k in flow.open_keys())

    await until(over)
    await ami_listener.drain()
    await until(lambda: len(ami_listener.recordings) == 0)


def place_recording(recordings: Path, wav: str, *, empty: bool = False) -> int:
    """Put the file MixMonitor wrote where the listener reads it; its size."""
    example = "recording_example_unanswered_empty.wav" if empty else "recording_example.wav"
    target = recordings / "calltracking" / wav
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes((fixtures_dir() / example).read_bytes())
    return target.stat().st_size


# -- the FastAGI side ----------------------------------------------------------------------------
# The 500 ms budget is tests/agi's subject; here a busy machine must not turn one slow moment
# into the error variables (the store answers in 10-50 ms on either engine).
AGI_BUDGET_S = 5.0


@contextlib.asynccontextmanager
async def agi_server(db: Database, clock: Callable[[], datetime]) -> AsyncIterator[AgiServer]:
    server = AgiServer(
        SqlCallRecorder(db), PBX, "7", "127.0.0.1", 0, budget_s=AGI_BUDGET_S, clock=clock
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def agi_call(
    server: AgiServer,
    name: str,
    linkedid: str,
    rewrite: Mapping[str, str],
) -> dict[str, str]:
    """Play the captured FastAGI session `name` with numbers rewritten; the variables set."""
    transcript = load_fastagi(fixtures_dir() / "fastagi" / f"fastagi_{name}.asterisk_to_server.txt")
    block = transcript.env_block
    for old, new in rewrite.items():
        block = block.replace(digits(old).encode(), digits(new).encode())
    session = await asyncio.wait_for(
        asterisk(server.port, block, linkedid_reply(linkedid), transcript.hangup_before), 5
    )
    return dict(session.sets)


# -- reading the store ---------------------------------------------------------------------------
async def call_rows(db: Database) -> list[Any]:
    async with db.read() as conn:
        return list(await conn.execute(sa.select(t.calls).order_by(t.calls.c.started_at)))


async def call_events(db: Database) -> list[tuple[str, str]]:
    """(event key, call id) of every call.* event in the outbox, in order."""
    async with db.read() as conn:
        rows = await conn.execute(
            sa.select(t.outbox.c.key, t.outbox.c.payload)
            .where(t.outbox.c.key.like("call.%"))
            .order_by(t.outbox.c.seq)
        )
        return [(r.key, r.payload["data"]["id"]) for r in rows]


async def until(check: Callable[[], object], within_s: float = 10.0) -> None:
    async with asyncio.timeout(within_s):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def stored(
    db: Database, check: Callable[[list[Any]], object], within_s: float = 30.0
) -> list[Any]:
    """Poll the calls table until `check(rows)` holds; the rows."""
    async with asyncio.timeout(within_s):
        while True:
            rows = await call_rows(db)
            if check(rows):
                return rows
            await asyncio.sleep(0.02)

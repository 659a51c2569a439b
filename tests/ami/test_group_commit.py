"""The AMI listener's group commit: many calls' facts in one transaction store exactly what the
one-fact-per-transaction reports store, and a batch that fails (an exception in the middle of
its transaction, or the database cut under it) loses no call and doubles none."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from calltracking.core.callflow.facts import (
    CallAnswered,
    CallEnded,
    CallStarted,
    Fact,
    RecordingNamed,
)
from calltracking.core.kinds import CallStatus
from calltracking.core.records import CallKey
from calltracking.store import schema as t
from calltracking.store.call_fact_batches import write_facts
from calltracking.store.calls import SqlCallRecorder
from calltracking.store.db import Database
from calltracking.store.migrate import migrate
from tests.ami.test_listener import running
from tests.integration.pbx import (
    BOTH_DATABASES,
    GatedAsterisk,
    GatedSession,
    StepClock,
    ami_transcript,
    linkedid_of,
    listener,
    seed_scene,
    until,
)
from tests.store.seed import T0
from tests.support.tcpproxy import TcpProxy

UNKNOWN_DID = "+74959999999"
TRANSCRIPTS = ("answered_call", "no_answer", "busy")


def facts_of(pbx: str, leased: str, default: str, callers: Sequence[str]) -> list[Fact]:
    """Three calls, two of them from one caller, with repeated reports."""
    one, two, three = (CallKey(pbx, f"17955925{i}.0") for i in range(3))
    at = T0 + timedelta(minutes=5)
    s = timedelta(seconds=1)
    return [
        CallStarted(one, leased, callers[0], at),
        CallStarted(two, default, callers[0], at + 2 * s),
        CallAnswered(one, at + 3 * s, "PJSIP/101"),
        RecordingNamed(one, "/var/spool/asterisk/monitor/calltracking/one.wav"),
        CallStarted(one, leased, callers[0], at + 4 * s),  # repeated: changes nothing
        CallStarted(three, UNKNOWN_DID, None, at + 5 * s),
        CallEnded(two, at + 20 * s, CallStatus.MISSED, 16),
        CallEnded(one, at + 60 * s, CallStatus.ANSWERED, 16),
        CallAnswered(one, at + 61 * s, "PJSIP/102"),  # after the end: changes nothing
        CallEnded(three, at + 30 * s, CallStatus.BUSY, 17),
        CallEnded(three, at + 31 * s, CallStatus.UNKNOWN, None, reconciled=True),
    ]


async def one_by_one(recorder: SqlCallRecorder, facts: Sequence[Fact]) -> None:
    for f in facts:
        if isinstance(f, CallStarted):
            await recorder.start_call(f.key, f.did, f.caller, f.at)
        elif isinstance(f, CallAnswered):
            await recorder.answer_call(f.key, f.at, f.answered_by)
        elif isinstance(f, CallEnded):
            await recorder.end_call(f.key, f.at, f.status, f.hangup_cause, reconciled=f.reconciled)
        elif isinstance(f, RecordingNamed):
            await recorder.name_recording(f.key, f.asterisk_path)


async def stored_by_pbx(db: Database, pbx: str, callers: Sequence[str]) -> tuple[Any, Any]:
    """The pbx's calls (by linkedid) and its call.* outbox payloads, in order, with ids and
    callers replaced by what they stand for, so two runs compare equal."""
    async with db.read() as conn:
        rows = list(await conn.execute(sa.select(t.calls).where(t.calls.c.pbx_id == pbx)))
        names = {r.id: r.linkedid for r in rows}
        events = await conn.execute(sa.select(t.outbox.c.payload).order_by(t.outbox.c.seq))
        payloads = [p for (p,) in events if p["data"]["id"] in names]
    alias = {c: f"caller{i}" for i, c in enumerate(callers)}
    calls = {
        r.linkedid: {
            **{k: v for k, v in r._mapping.items() if k not in ("id", "pbx_id")},
            "caller": alias.get(r.caller),
        }
        for r in rows
    }
    out = []
    for p in payloads:
        data = {**p["data"], "id": names[p["data"]["id"]], "caller": alias.get(p["data"]["caller"])}
        out.append((p["event"], p["occurred_at"], data))
    return calls, out


@BOTH_DATABASES
async def test_a_batch_stores_what_one_report_per_transaction_stores(any_db: Database) -> None:
    scene = await seed_scene(any_db, T0)
    default = next(iter(scene.site.defaults.values()))
    recorder = SqlCallRecorder(any_db)
    singles, batched = ("+79161234567", "+79160000000"), ("+79162223344", "+79160000001")
    await one_by_one(recorder, facts_of("one", scene.leased, default, singles))
    await recorder.record_facts(facts_of("two", scene.leased, default, batched))

    one_calls, one_events = await stored_by_pbx(any_db, "one", singles)
    two_calls, two_events = await stored_by_pbx(any_db, "two", batched)
    assert len(one_calls) == 3 and len(one_events) == 7  # 3 started, 1 answered, 3 ended
    assert two_calls == one_calls
    assert two_events == one_events
    kinds = {c["kind"] for c in one_calls.values()}
    assert kinds >= {"dynamic", "unknown"}  # attribution really resolved, not defaulted


class FailingOnce(SqlCallRecorder):
    """Writes its first batch, then fails before the commit (the transaction rolls back)."""

    failed = 0

    async def record_facts(self, facts: Sequence[Fact]) -> None:
        if not self.failed:
            self.failed = len(facts)
            async with self.db.write() as conn:
                await write_facts(conn, facts)
                raise RuntimeError("the batch breaks after its writes")
        await super().record_facts(facts)


def gated_transcripts() -> GatedSession:
    """The three recorded calls one after the other, held back until the gate opens."""
    return GatedSession(stream=[b for name in TRANSCRIPTS for b in ami_transcript(name, {})])


async def calls_and_events(db: Database) -> tuple[list[str], list[tuple[str, str]]]:
    async with db.read() as conn:
        rows = list(await conn.execute(sa.select(t.calls.c.id, t.calls.c.linkedid)))
        events = await conn.execute(
            sa.select(t.outbox.c.key, t.outbox.c.payload).where(t.outbox.c.key.like("call.%"))
        )
        ids = {r.id: r.linkedid for r in rows}
        return sorted(ids.values()), sorted((k, ids[p["data"]["id"]]) for k, p in events)


def expected() -> tuple[list[str], list[tuple[str, str]]]:
    linkedids = sorted(linkedid_of(name) for name in TRANSCRIPTS)
    events = [("call.ended", x) for x in linkedids] + [("call.started", x) for x in linkedids]
    return linkedids, sorted([*events, ("call.answered", linkedid_of("answered_call"))])


async def ended_calls(db: Database) -> int:
    async with db.read() as conn:
        count = sa.select(sa.func.count()).select_from(t.calls)
        return int(await conn.scalar(count.where(t.calls.c.ended_at.is_not(None))) or 0)


async def wait_ended(db: Database, n: int) -> None:
    async with asyncio.timeout(30):
        while await ended_calls(db) < n:  # noqa: ASYNC110 (another process's rows)
            await asyncio.sleep(0.02)


@BOTH_DATABASES
async def test_a_batch_failing_mid_transaction_loses_no_call_and_doubles_none(
    any_db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = FailingOnce(any_db)
    session = gated_transcripts()
    async with GatedAsterisk([session]) as server:
        ami = listener(server.port, recorder, tmp_path, StepClock(T0))
        async with running(ami):
            await until(lambda: server.actions[:2] == ["Login", "CoreShowChannels"])
            await ami.drain()
            session.gate.set()
            await wait_ended(any_db, len(TRANSCRIPTS))
            await ami.drain()
    assert recorder.failed > 0, "the first batch failed"
    assert any("storing them one by one" in r.getMessage() for r in caplog.records)
    assert await calls_and_events(any_db) == expected()


@pytest.fixture
async def proxied_pg(pg_url: str) -> AsyncIterator[tuple[Database, TcpProxy]]:
    clean = Database(pg_url)
    async with clean.engine.begin() as conn:
        await conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        await conn.execute(sa.text("CREATE SCHEMA public"))
    await clean.close()
    url = sa.make_url(pg_url)
    proxy = await TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    db = Database(str(url.set(port=proxy.port)))
    try:
        await migrate(db)
        yield db, proxy
    finally:
        await db.close()
        await proxy.stop()


@pytest.mark.postgres
async def test_calls_reported_while_postgresql_is_cut_are_stored_once_when_it_is_back(
    proxied_pg: tuple[Database, TcpProxy], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db, proxy = proxied_pg
    recorder = SqlCallRecorder(db)
    session = gated_transcripts()
    async with GatedAsterisk([session]) as server:
        ami = listener(server.port, recorder, tmp_path, StepClock(T0))
        async with running(ami):
            await until(lambda: server.actions[:2] == ["Login", "CoreShowChannels"])
            await ami.drain()
            proxy.cut()
            session.gate.set()

            def retrying() -> bool:
                return any("not written" in r.getMessage() for r in caplog.records)

            await until(retrying, within_s=30)
            proxy.restore()
            await wait_ended(db, len(TRANSCRIPTS))
            await ami.drain()
    assert await calls_and_events(db) == expected()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]

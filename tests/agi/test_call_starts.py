"""The FastAGI's call starts in group commits (store/call_batches.py) keep the store's rules:
the same rows, resolutions and `call.started` payloads as `SqlCallRecorder.start_call` one call
at a time, one row per (PBX, Linkedid) whoever reports first, and never an answer for a call the
database does not hold, even when the database connection dies in the middle of a batch."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from agi import AgiServer
from calltracking.core.kinds import AttributionKind
from calltracking.core.records import CallKey, Resolution
from calltracking.pbxsim.agi_client import agi_env, env_block
from calltracking.store import bulk_insert
from calltracking.store import schema as t
from calltracking.store.call_batches import CallStartBatcher
from calltracking.store.call_starts import (
    CallStart,
    read_numbers,
)
from calltracking.store.calls import SqlCallRecorder
from calltracking.store.db import Database
from tests.integration.pbx import BOTH_DATABASES, PBX, Scene, seed_scene
from tests.support.tcpproxy import TcpProxy

HELLO_AT = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
CALL_AT = HELLO_AT + timedelta(minutes=3)
UNKNOWN_DID = "+74959999999"
# Differ between two stores of the same call: its id, its key and (chosen per test) its caller.
OWN = {"id", "linkedid", "caller"}


async def _rows(db: Database) -> dict[str, Any]:
    async with db.read() as conn:
        return {r.linkedid: r for r in await conn.execute(sa.select(t.calls))}


async def _started_payloads(db: Database) -> dict[str, dict[str, Any]]:
    """call.started payloads by call id."""
    async with db.read() as conn:
        rows = await conn.execute(
            sa.select(t.outbox.c.payload).where(t.outbox.c.key == "call.started")
        )
        return {r.payload["data"]["id"]: r.payload["data"] for r in rows}


def _without(values: dict[str, Any], keys: set[str]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k not in keys}


def _dids(scene: Scene) -> list[str]:
    return [scene.leased, scene.default("initial"), scene.default("expired"), UNKNOWN_DID]


@BOTH_DATABASES
async def test_a_batch_stores_each_call_as_the_recorder_stores_it_alone(any_db: Database) -> None:
    scene = await seed_scene(any_db, HELLO_AT)
    recorder = SqlCallRecorder(any_db)
    batcher = CallStartBatcher(any_db, recorder)
    dids = _dids(scene)
    alone = [
        await recorder.start_call(CallKey(PBX, f"alone-{i}"), did, f"+7916000000{i}", CALL_AT)
        for i, did in enumerate(dids)
    ]
    batched = await asyncio.gather(
        *(
            batcher.start_call(CallKey(PBX, f"batch-{i}"), did, f"+7926000000{i}", CALL_AT)
            for i, did in enumerate(dids)
        )
    )
    await batcher.close()
    assert alone[0].kind is AttributionKind.DYNAMIC and alone[0].campaign == "spring"
    assert [r.__class__(**{**_fields(r), "call_id": ""}) for r in batched] == [
        r.__class__(**{**_fields(r), "call_id": ""}) for r in alone
    ]
    rows = await _rows(any_db)
    payloads = await _started_payloads(any_db)
    for i in range(len(dids)):
        one, other = rows[f"alone-{i}"], rows[f"batch-{i}"]
        assert _without(dict(other._mapping), OWN) == _without(dict(one._mapping), OWN)
        assert _without(payloads[other.id], OWN) == _without(payloads[one.id], OWN)
    assert batcher.batches == 1


def _fields(resolution: Resolution) -> dict[str, Any]:
    return {f: getattr(resolution, f) for f in resolution.__slots__}


@BOTH_DATABASES
async def test_calls_and_their_events_get_ids_that_sort_by_when_they_were_made(
    any_db: Database,
) -> None:
    """Time-ordered ids (store/ids.py): new calls and events land at the end of their indexes,
    whichever path stored them (a batch, the recorder alone)."""
    scene = await seed_scene(any_db, HELLO_AT)
    recorder = SqlCallRecorder(any_db)
    batcher = CallStartBatcher(any_db, recorder)
    before = time.time_ns() // 1_000_000
    await recorder.start_call(CallKey(PBX, "alone"), scene.leased, None, CALL_AT)
    await asyncio.gather(
        *(batcher.start_call(CallKey(PBX, f"b{i}"), scene.leased, None, CALL_AT) for i in range(3))
    )
    await batcher.close()
    after = time.time_ns() // 1_000_000
    async with any_db.read() as conn:
        call_ids = list((await conn.execute(sa.select(t.calls.c.id))).scalars())
        event_ids = list(
            (
                await conn.execute(
                    sa.select(t.outbox.c.event_id).where(t.outbox.c.key == "call.started")
                )
            ).scalars()
        )
    assert len(call_ids) == len(event_ids) == 4
    for made in call_ids + event_ids:
        assert before <= int(made[:12], 16) <= after, made


@BOTH_DATABASES
async def test_a_callers_calls_in_one_batch_see_each_other_as_one_after_another(
    any_db: Database,
) -> None:
    scene = await seed_scene(any_db, HELLO_AT)
    recorder = SqlCallRecorder(any_db)
    batcher = CallStartBatcher(any_db, recorder)
    for n in range(3):
        await recorder.start_call(CallKey(PBX, f"alone-{n}"), scene.leased, "+79160000001", CALL_AT)
    await asyncio.gather(
        *(
            batcher.start_call(CallKey(PBX, f"batch-{n}"), scene.leased, "+79260000001", CALL_AT)
            for n in range(3)
        )
    )
    await batcher.close()
    rows = await _rows(any_db)

    def flags(prefix: str) -> list[tuple[bool, bool]]:
        return [
            (rows[f"{prefix}-{n}"].first_time_caller, rows[f"{prefix}-{n}"].lead) for n in range(3)
        ]

    assert flags("alone")[0][0] is True
    assert flags("batch") == flags("alone")


@BOTH_DATABASES
async def test_a_call_the_ami_stored_first_keeps_its_attribution_and_one_row(
    any_db: Database,
) -> None:
    scene = await seed_scene(any_db, HELLO_AT)
    recorder = SqlCallRecorder(any_db)
    batcher = CallStartBatcher(any_db, recorder)
    key = CallKey(PBX, "1795592516.1")
    first = await recorder.start_call(key, scene.leased, "+79160000001", CALL_AT)
    # Later reports say another DID: the frozen attribution stays the first one.
    answers = await asyncio.gather(
        batcher.start_call(key, UNKNOWN_DID, None, CALL_AT),
        batcher.start_call(key, scene.leased, "+79160000001", CALL_AT),
        batcher.start_call(CallKey(PBX, "other"), scene.leased, None, CALL_AT),
    )
    await batcher.close()
    assert answers[0] == answers[1] == first
    assert answers[2].call_id != first.call_id
    rows = await _rows(any_db)
    assert sorted(rows) == ["1795592516.1", "other"]
    assert sorted(p["id"] for p in (await _started_payloads(any_db)).values()) == sorted(
        r.id for r in rows.values()
    )


@pytest.mark.postgres
@pytest.mark.parametrize("any_db", ["postgres"], indirect=True)
async def test_agi_and_ami_racing_on_the_same_calls_store_each_once(any_db: Database) -> None:
    scene = await seed_scene(any_db, HELLO_AT)
    recorder = SqlCallRecorder(any_db)
    batcher = CallStartBatcher(any_db, recorder)
    keys = [CallKey(PBX, f"race-{n}") for n in range(20)]
    ami = [recorder.start_call(k, scene.leased, None, CALL_AT) for k in keys]
    agi = [batcher.start_call(k, scene.leased, None, CALL_AT) for k in keys]
    told = await asyncio.gather(*(c for pair in zip(ami, agi, strict=True) for c in pair))
    await batcher.close()
    assert told[0::2] == told[1::2]  # both sides were told the same call, whoever won
    rows = await _rows(any_db)
    assert sorted(rows) == sorted(k.linkedid for k in keys)
    assert len(await _started_payloads(any_db)) == len(keys)


@BOTH_DATABASES
async def test_the_same_new_call_twice_in_one_batch_is_stored_once(any_db: Database) -> None:
    """The AGI may report one Linkedid twice (a second dialogue of the same call): the batch
    stores its first start and answers both with it."""
    scene = await seed_scene(any_db, HELLO_AT)
    batcher = CallStartBatcher(any_db, SqlCallRecorder(any_db))
    key = CallKey(PBX, "twice")
    told = await asyncio.gather(
        batcher.start_call(key, scene.leased, "+79160000001", CALL_AT),
        batcher.start_call(key, UNKNOWN_DID, None, CALL_AT),
    )
    await batcher.close()
    assert batcher.batches == 1
    assert told[0] == told[1] and told[0].kind is AttributionKind.DYNAMIC
    rows = await _rows(any_db)
    assert list(rows) == ["twice"] and rows["twice"].caller == "+79160000001"
    assert list(await _started_payloads(any_db)) == [rows["twice"].id]


@pytest.mark.postgres
@pytest.mark.parametrize("any_db", ["postgres"], indirect=True)
async def test_a_call_stored_between_a_batchs_read_and_insert_is_answered_from_its_row(
    any_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The AMI listener stores a key after the batch read it as new: the batch's one insert
    fails whole (nothing of it is written), and the batch runs again, answering that key from
    the stored row and storing the others."""
    scene = await seed_scene(any_db, HELLO_AT)
    recorder = SqlCallRecorder(any_db)
    raced = CallKey(PBX, "raced")
    first: list[Resolution] = []
    real = bulk_insert.insert_tables_on

    async def ami_first(driver: Any, dialect: Any, tables: Sequence[tuple[Any, Any]]) -> None:
        if not first:
            first.append(await recorder.start_call(raced, scene.leased, "+79160000001", CALL_AT))
        await real(driver, dialect, tables)

    monkeypatch.setattr(bulk_insert, "insert_tables_on", ami_first)
    batcher = CallStartBatcher(any_db, recorder)
    told = await asyncio.gather(
        batcher.start_call(raced, UNKNOWN_DID, None, CALL_AT),
        batcher.start_call(CallKey(PBX, "alone"), scene.leased, None, CALL_AT),
    )
    await batcher.close()
    assert told[0] == first[0]
    assert told[1].kind is AttributionKind.DYNAMIC and told[1].call_id != first[0].call_id
    rows = await _rows(any_db)
    assert sorted(rows) == ["alone", "raced"]
    assert rows["raced"].id == first[0].call_id
    assert sorted(await _started_payloads(any_db)) == sorted(r.id for r in rows.values())


@BOTH_DATABASES
async def test_a_committed_batch_wakes_the_relay(any_db: Database) -> None:
    """Batches that bypass the Database's engine (SQLite on the loop, PostgreSQL's own asyncpg
    connection) call `committed` themselves; nothing else would tell the relay."""
    scene = await seed_scene(any_db, HELLO_AT)
    woken: list[int] = []
    batcher = CallStartBatcher(
        any_db, SqlCallRecorder(any_db), committed=lambda: woken.append(batcher.batches)
    )
    await batcher.start_call(CallKey(PBX, "one"), scene.leased, None, CALL_AT)
    await batcher.start_call(CallKey(PBX, "two"), scene.leased, None, CALL_AT)
    await batcher.close()
    assert woken == [0, 1]  # once per batch, before its callers are answered


# -- the guarantee: no dialogue answered for a call that is not committed -----------------------


async def _dialogue(port: int, linkedid: str, did: str) -> dict[str, str]:
    """Asterisk's side of one `calltracking` session; the variables the server set."""
    env = agi_env(
        request=f"agi://127.0.0.1:{port}/calltracking",
        channel="PJSIP/trunk-00000001",
        uniqueid=linkedid,
        caller="+79161234567",
        context="from-trunk",
        did=did,
        args=[],
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sets: dict[str, str] = {}
    try:
        writer.write(env_block(env))
        while line := (await reader.readline()).decode():
            words = line.split()
            if line.startswith("GET FULL VARIABLE"):
                writer.write(f"200 result=1 ({linkedid})\n".encode())
            else:
                sets[words[2]] = words[3].strip('"')
                writer.write(b"200 result=1\n")
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return sets


async def _cut_mid_batch(
    db: Database, monkeypatch: pytest.MonkeyPatch, leased: str, after_insert: bool
) -> tuple[dict[str, str], list[dict[str, str]], dict[str, str]]:
    """Dialogues through a proxied database: one before, three whose batch loses its
    connection (after its reads, before or after its insert), one after the proxy is back.
    What each was told: (before, the three, after)."""
    url = make_url(db.url)
    proxy = await TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    proxied = Database(url.set(port=proxy.port).render_as_string(hide_password=False))
    reached, release = asyncio.Event(), asyncio.Event()
    real = bulk_insert.insert_tables_on

    async def held(driver: Any, dialect: Any, tables: Sequence[tuple[Any, Any]]) -> None:
        (calls, rows), *_ = tables
        assert calls is t.calls
        cut_batch = any(row["linkedid"].startswith("cut-") for row in rows)
        if cut_batch and not after_insert:
            reached.set()
            await release.wait()
        await real(driver, dialect, tables)
        if cut_batch and after_insert:
            reached.set()
            await release.wait()

    # PostgreSQL's batches go through their own asyncpg connection (call_starts_pg.py).
    monkeypatch.setattr(bulk_insert, "insert_tables_on", held)
    batcher = CallStartBatcher(proxied, SqlCallRecorder(proxied))
    server = AgiServer(batcher, PBX, "7", "127.0.0.1", 0, budget_s=60.0)
    await server.start()
    try:
        before = await _dialogue(server.port, "kept-1", leased)
        cut = [asyncio.create_task(_dialogue(server.port, f"cut-{n}", leased)) for n in range(3)]
        await reached.wait()
        proxy.cut()
        release.set()
        told = await asyncio.gather(*cut)
        proxy.restore()
        after = await _dialogue(server.port, "kept-2", leased)
    finally:
        await server.stop()
        await batcher.close()
        await proxied.close()
        await proxy.stop()
    return before, told, after


@pytest.mark.postgres
@pytest.mark.parametrize("any_db", ["postgres"], indirect=True)
async def test_a_batch_whose_connection_dies_before_its_insert_answers_no_call_as_tracked(
    any_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = await seed_scene(any_db, HELLO_AT)
    before, told, after = await _cut_mid_batch(any_db, monkeypatch, scene.leased, False)
    assert before["CALLTRACKING_KIND"] == after["CALLTRACKING_KIND"] == "dynamic"
    assert all(sets == {"CALLTRACKING_ERROR": "1", "CALLTRACKING_KIND": "unknown"} for sets in told)
    assert sorted(await _rows(any_db)) == ["kept-1", "kept-2"]
    assert len(await _started_payloads(any_db)) == 2


@pytest.mark.postgres
@pytest.mark.parametrize("any_db", ["postgres"], indirect=True)
async def test_a_batch_whose_connection_dies_after_its_insert_keeps_what_it_told(
    any_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL a batch's insert commits on its own (no transaction: call_batches.py), so
    a connection lost after it loses nothing: the calls are stored with their events. The
    dead connection went back to the pool unnoticed; the next batch meets it and runs again
    on a new one instead of failing its call."""
    scene = await seed_scene(any_db, HELLO_AT)
    before, told, after = await _cut_mid_batch(any_db, monkeypatch, scene.leased, True)
    assert before["CALLTRACKING_KIND"] == after["CALLTRACKING_KIND"] == "dynamic"
    assert [sets["CALLTRACKING_KIND"] for sets in told] == ["dynamic"] * 3
    assert sorted(await _rows(any_db)) == ["cut-0", "cut-1", "cut-2", "kept-1", "kept-2"]
    assert len(await _started_payloads(any_db)) == 5


@BOTH_DATABASES
async def test_a_batch_reads_each_numbers_newest_leases_up_to_its_latest_call(
    any_db: Database,
) -> None:
    scene = await seed_scene(any_db, HELLO_AT)
    async with any_db.write() as conn:
        lease = (
            await conn.execute(sa.select(t.leases).where(t.leases.c.number == scene.leased))
        ).one()
        # Earlier leases of the same number, ended, and one assigned after the batch's calls.
        for minutes in (-50, -40, -30, -20, 30):
            await conn.execute(
                t.leases.insert().values(
                    {
                        **lease._mapping,
                        "id": f"lease{minutes:+d}",
                        "assigned_at": HELLO_AT + timedelta(minutes=minutes),
                        "ended_at": HELLO_AT + timedelta(minutes=minutes + 5),
                    }
                )
            )
    starts = [CallStart(CallKey(PBX, "read-1"), scene.leased, None, CALL_AT)]
    async with any_db.read() as conn:
        seen = await read_numbers(conn, starts)
    newest = [row.id for row in seen.facts.leases[scene.leased]]
    assert newest == [lease.id, "lease-20", "lease-30"]


@BOTH_DATABASES
async def test_events_no_consumer_wants_are_written_published_and_the_rest_pending(
    any_db: Database,
) -> None:
    """`unwanted` (the in-process bus's `wanted`, negated) settles a `call.started` row at its
    insert; every other row is left for the relay, and the payloads are the same either way."""
    scene = await seed_scene(any_db, HELLO_AT)
    quiet, loud = ("+79160000001", "+79160000002"), ("+79260000001", "+79260000002")
    asked: list[str] = []

    def unwanted(event: Any) -> bool:
        asked.append(event.data["caller"])
        return event.data["caller"] in quiet

    batcher = CallStartBatcher(any_db, SqlCallRecorder(any_db), unwanted=unwanted)
    before = datetime.now(UTC)
    await asyncio.gather(
        *(
            batcher.start_call(CallKey(PBX, caller), scene.leased, caller, CALL_AT)
            for caller in (*quiet, *loud)
        )
    )
    # A key stored already writes no event at all, so nothing is asked about it.
    await batcher.start_call(CallKey(PBX, quiet[0]), scene.leased, quiet[0], CALL_AT)
    await batcher.close()
    async with any_db.read() as conn:
        rows = (
            await conn.execute(
                sa.select(t.outbox.c.payload, t.outbox.c.published_at).where(
                    t.outbox.c.key == "call.started"
                )
            )
        ).all()
    published = {r.payload["data"]["caller"]: r.published_at for r in rows}
    assert sorted(asked) == sorted((*quiet, *loud))
    assert set(published) == {*quiet, *loud}
    assert all(published[c] is not None and published[c] >= before for c in quiet)
    assert all(published[c] is None for c in loud)

"""A batch's reads on PostgreSQL in one statement (store/call_start_read_pg.py) see exactly what
the separate statements of call_start_facts.py see: the same rows with the same values, the same
callers' flags and the same stored keys; a batch is two round trips (the reads, the inserts:
no BEGIN or COMMIT) whatever its size; and its stored keys are probed by index, not found by
a scan of every call, nor by any scan on the batches' own connection, planned once."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.engine import make_url

from calltracking.core.records import CallKey
from calltracking.core.settings import settings_to_json
from calltracking.store import schema as t
from calltracking.store.call_batches import CallStartBatcher
from calltracking.store.call_start_facts import (
    CallStart,
    Facts,
    lease_visits_needed,
    read_callers,
    read_numbers,
    stored_calls,
    visits_by_id,
)
from calltracking.store.call_start_read_pg import _statement, read_all
from calltracking.store.calls import SqlCallRecorder
from calltracking.store.db import Database
from calltracking.store.sites import site_from_text_row
from tests.integration.pbx import PBX, Scene, seed_scene

pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("any_db", ["postgres"], indirect=True)]

HELLO_AT = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
CALL_AT = HELLO_AT + timedelta(minutes=3)
UNKNOWN_DID = "+74959999999"
REGULAR, NEW_CALLER = "+79160000001", "+79160000002"


async def _history(scene: Scene) -> None:
    """Older and later leases of the leased number, more visits of its visitor, and calls of
    one caller before the batch (one of them a month earlier)."""
    db = scene.db
    async with db.write() as conn:
        lease = (
            await conn.execute(sa.select(t.leases).where(t.leases.c.number == scene.leased))
        ).one()
        visit = (
            await conn.execute(sa.select(t.visits).where(t.visits.c.id == lease.visit_id))
        ).one()
        for minutes in (-90, -60, -30, 30):
            await conn.execute(
                t.visits.insert().values(
                    {
                        **visit._mapping,
                        "id": f"visit{minutes:+d}",
                        "started_at": HELLO_AT + timedelta(minutes=minutes),
                        "campaign": None if minutes == -60 else f"c{minutes}",
                    }
                )
            )
        for minutes in (-50, -40, -20, 30):
            await conn.execute(
                t.leases.insert().values(
                    {
                        **lease._mapping,
                        "id": f"lease{minutes:+d}",
                        "visit_id": f"visit{minutes - 10:+d}" if minutes == -20 else None,
                        "assigned_at": HELLO_AT + timedelta(minutes=minutes),
                        "ended_at": HELLO_AT + timedelta(minutes=minutes + 5),
                    }
                )
            )
    recorder = SqlCallRecorder(db)
    for n, at in enumerate((CALL_AT - timedelta(days=31), CALL_AT - timedelta(minutes=1))):
        await recorder.start_call(CallKey(PBX, f"before-{n}"), scene.leased, REGULAR, at)


def _starts(scene: Scene) -> list[CallStart]:
    dids = [scene.leased, scene.default("initial"), scene.default("expired"), UNKNOWN_DID]
    callers = [REGULAR, NEW_CALLER, None, REGULAR]
    starts = [
        CallStart(CallKey(PBX, f"new-{n}"), did, caller, CALL_AT + timedelta(seconds=n))
        for n, (did, caller) in enumerate(zip(dids, callers, strict=True))
    ]
    starts.append(CallStart(CallKey(PBX, "before-1"), scene.leased, REGULAR, CALL_AT))
    starts.append(CallStart(CallKey("other-pbx", "before-1"), scene.leased, None, CALL_AT))
    return starts


def _comparable(facts: Facts) -> dict[str, Any]:
    return {
        "numbers": facts.numbers,
        "leases": facts.leases,
        "sites": facts.sites,
        "visits": facts.visits,
        "visits_by_id": facts.visits_by_id,
        "accounts": facts.accounts,
        "earlier": dict(facts.earlier),
        # counted, never ordered: call_start_rows._flags
        "leads": {pair: sorted(times) for pair, times in facts.leads.items()},
    }


async def test_one_statement_reads_what_the_separate_statements_read(any_db: Database) -> None:
    scene = await seed_scene(any_db, HELLO_AT)
    await _history(scene)
    starts = _starts(scene)
    async with any_db.read() as conn:
        apart = (await conn.run_sync(read_numbers, starts)).facts
        # The separate statements read only the leases' visits a call may fall back to; the
        # one statement reads every lease's visit: compare those with all of them read apart.
        every = {r.visit_id for rows in apart.leases.values() for r in rows if r.visit_id}
        every_visit = await conn.run_sync(visits_by_id, every)
        needed = lease_visits_needed(apart.leases, apart.visits, min(s.at for s in starts))
        assert apart.visits_by_id == {k: every_visit[k] for k in needed}
        apart.visits_by_id = every_visit
        await conn.run_sync(read_callers, starts, apart)
        stored_apart = await conn.run_sync(stored_calls, {s.key for s in starts})
        together, stored = await conn.run_sync(read_all, starts)
    assert _comparable(together) == _comparable(apart)
    assert stored == set(stored_apart) == {CallKey(PBX, "before-1")}
    # The scene is not trivial: several leases and visits, a site, an account, a caller's flags.
    assert len(together.leases[scene.leased]) == 3
    assert len(together.visits_by_id) == 2
    assert together.sites and together.accounts
    assert set(together.earlier) == {(scene.site.account_id, REGULAR)}
    visits = next(iter(together.visits.values()))
    assert visits[0].started_at.tzinfo is UTC and visits[0].started_at <= CALL_AT


async def test_a_site_is_parsed_again_only_when_what_it_is_built_from_changed(
    any_db: Database,
) -> None:
    scene = await seed_scene(any_db, HELLO_AT)
    starts = [CallStart(CallKey(PBX, "x"), scene.leased, REGULAR, CALL_AT)]
    sites = t.sites.update().where(t.sites.c.id == scene.site.id)

    async def site_read() -> Any:
        async with any_db.read() as conn:
            facts, _stored = await conn.run_sync(read_all, starts)
        return facts.sites[scene.site.id]

    first = await site_read()
    # Every lease bumps the version and the recent changes: the site is the one read before.
    async with any_db.write() as conn:
        await conn.execute(sites.values(state_version=t.sites.c.state_version + 1))
    misses = site_from_text_row.cache_info().misses
    assert await site_read() is first
    assert site_from_text_row.cache_info().misses == misses
    # Its settings changed: the next batch sees them.
    settings = settings_to_json(first.settings, mask_secrets=False)
    settings["route"] = "100@sales"
    async with any_db.write() as conn:
        await conn.execute(sites.values(settings=settings))
    changed = await site_read()
    assert changed.settings.route == "100@sales" and first.settings.route is None
    assert changed.id == first.id and changed.key == first.key


async def test_an_empty_store_reads_nothing_for_unknown_numbers(any_db: Database) -> None:
    starts = [CallStart(CallKey(PBX, "x"), UNKNOWN_DID, REGULAR, CALL_AT)]
    async with any_db.read() as conn:
        facts, stored = await conn.run_sync(read_all, starts)
    assert stored == frozenset()
    assert _comparable(facts) == _comparable(Facts({}, {}, {}, {}, {}))


async def test_a_batch_is_two_round_trips_whatever_its_size(
    any_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = await seed_scene(any_db, HELLO_AT)
    await _history(scene)
    trips: list[str] = []
    cursor, connection = (
        asyncpg_dialect.AsyncAdapt_asyncpg_cursor,
        asyncpg_dialect.AsyncAdapt_asyncpg_connection,
    )

    def counted(cls: Any, name: str, label: Any) -> None:
        real = getattr(cls, name)

        async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            if name != "_start_transaction" or self.isolation_level != "autocommit":
                trips.append(label(*args))  # an autocommit connection sends no BEGIN
            return await real(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, wrapper)

    counted(cursor, "_prepare_and_execute", lambda sql, *_: sql.split()[0] + " " + sql.split()[1])
    counted(cursor, "_executemany", lambda sql, *_: "many " + sql.split()[0])
    counted(connection, "_start_transaction", lambda: "BEGIN")
    counted(connection, "_call_and_discard", lambda fn: fn.__name__.upper())
    # The batches' own connection is used straight through asyncpg (call_starts_pg.py).
    for name in ("fetch", "fetchrow", "fetchval", "execute", "executemany"):
        counted(asyncpg.Connection, name, lambda sql, *_: sql.split()[0] + " " + sql.split()[1])
    batcher = CallStartBatcher(any_db, SqlCallRecorder(any_db))
    starts = [s for s in _starts(scene) if s.key.linkedid.startswith("new-")]
    await asyncio.gather(*(batcher.start_call(s.key, s.did, s.caller, s.at) for s in starts))
    await batcher.close()
    assert batcher.batches == 1
    # No transaction (call_batches.py): the reads, then the inserts, each committed on its own;
    # before them, once per connection, its planner settings (call_starts_pg.py).
    assert trips == ["SET plan_cache_mode", "WITH n", "WITH i0"]


def _scans(plan: Any) -> list[str]:
    """The tables an `EXPLAIN (FORMAT JSON)` plan reads by a sequential scan."""
    if isinstance(plan, list):
        return [table for value in plan for table in _scans(value)]
    if not isinstance(plan, dict):
        return []
    found = [str(plan.get("Relation Name"))] if plan.get("Node Type") == "Seq Scan" else []
    return found + [table for value in plan.values() for table in _scans(value)]


async def _kept_plan(raw: Any, compiled: Any, values: dict[str, Any]) -> Any:
    """The plan `raw` keeps for the statement, as its session settings make it: EXPLAIN
    EXECUTE of a prepared statement goes through the plan cache (`plan_cache_mode`), where an
    EXPLAIN of the statement itself would plan it for the values given."""
    arguments = ", ".join(_literal(values[name]) for name in compiled.positiontup or ())
    await raw.execute(f"PREPARE kept_plan AS {compiled}")
    try:
        text = await raw.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE kept_plan({arguments})")
    finally:
        await raw.execute("DEALLOCATE kept_plan")
    return json.loads(text) if isinstance(text, str) else text  # the pool's JSON codec decodes


def _literal(value: Any) -> str:
    """A test value as SQL (EXECUTE takes no bound parameters): strings, their lists, times."""
    if isinstance(value, list):
        return "ARRAY[" + ", ".join(_literal(v) for v in value) + "]::varchar[]"
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'::timestamptz"
    assert isinstance(value, str) and "'" not in value
    return f"'{value}'"


def _index_names(plan: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(plan, dict):
        if plan.get("Relation Name") == "calls" and plan.get("Index Name"):
            found.add(plan["Index Name"])
        for value in plan.values():
            found |= _index_names(value)
    elif isinstance(plan, list):
        for value in plan:
            found |= _index_names(value)
    return found


async def test_the_stored_keys_are_probed_by_index_in_the_generic_plan(any_db: Database) -> None:
    """As a plain join, a generic plan over a few hundred calls scanned them all and kept doing
    so as they grew (23 ms a batch at 200,000 calls: docs/benchmarks.md)."""
    scene = await seed_scene(any_db, HELLO_AT)
    batcher = CallStartBatcher(any_db, SqlCallRecorder(any_db))
    await asyncio.gather(
        *(
            batcher.start_call(CallKey(PBX, f"h{i}"), scene.leased, REGULAR, CALL_AT)
            for i in range(300)
        )
    )
    await batcher.close()
    values = {
        "dids": [scene.leased],
        "callers": [REGULAR],
        "pbx_ids": [PBX] * 16,
        "linkedids": [f"new-{i}" for i in range(16)],
        "latest": CALL_AT,
        "since": CALL_AT - timedelta(days=40),
        "until": CALL_AT + timedelta(days=40),
    }
    async with any_db.write() as conn:
        await conn.exec_driver_sql("ANALYZE calls")
        compiled = _statement(conn.dialect).compile(dialect=conn.dialect)
    # A connection of its own (the pool's decode JSON their way), on the generic plan.
    raw = await asyncpg.connect(
        make_url(any_db.url).set(drivername="postgresql").render_as_string(False)
    )
    try:
        await raw.execute("SET plan_cache_mode = force_generic_plan")
        plan = await _kept_plan(raw, compiled, values)
    finally:
        await raw.close()
    assert "uq_calls_pbx_linkedid" in _index_names(plan)


async def test_the_batches_connection_plans_the_read_once_and_never_by_a_scan(
    any_db: Database,
) -> None:
    """A fresh tracker: nothing analyzed, no call stored. The plan the batches' connection makes
    now is the one it keeps (generic), so it must already be the index probes a big table
    needs; made on these tables with sequential scans allowed, it scans numbers, sites,
    accounts and calls."""
    scene = await seed_scene(any_db, HELLO_AT)
    batcher = CallStartBatcher(any_db, SqlCallRecorder(any_db))
    await batcher.start_call(CallKey(PBX, "first"), scene.leased, REGULAR, CALL_AT)
    pg = batcher._pg  # the batches' own connection (call_starts_pg.py)
    assert pg is not None
    raw = await pg._driver()
    assert await raw.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
    compiled = _statement(any_db.engine.dialect).compile(dialect=any_db.engine.dialect)
    values = {
        "dids": [scene.leased],
        "callers": [REGULAR],
        "pbx_ids": [PBX],
        "linkedids": ["next"],
        "latest": CALL_AT,
        "since": CALL_AT - timedelta(days=40),
        "until": CALL_AT + timedelta(days=40),
    }
    plan = await _kept_plan(raw, compiled, values)
    assert _scans(plan) == []
    assert "uq_calls_pbx_linkedid" in _index_names(plan)
    # Its settings stay with it: closed, not handed back to the pool.
    await batcher.close()
    assert raw.is_closed()

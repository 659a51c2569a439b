"""Many call starts stored in one transaction, a statement per kind of row, not per call.

The rules are those of `SqlCallRecorder.start_call` (calls.py), applied to a batch:
- A call is one row per (pbx_id, linkedid); a key already stored (the AMI listener came first, or
  the same key twice in one batch) gets the stored row's frozen resolution, nothing is written.
- New calls are attributed from the numbers' facts read before the write transaction
  (call_start_facts.read_numbers) and built by call_start_rows.new_call; the callers' earlier
  calls are read inside it (read_callers), so the flags count every stored call. On
  PostgreSQL the batch's reads are all one statement, the first of its write transaction
  (call_start_read_pg.py): the stored keys and the callers' calls are read there.
- Each new call writes its `call.started` outbox row in the same transaction. An event
  `unwanted` says no consumer would take (the in-process bus: `MemoryBus.wanted`) is written
  published: the relay would only read it, drop it and mark it (outbox.py, "Settled rows").
  Both inserts go through the driver (bulk_insert.py, values stored as SQLAlchemy would): one
  executemany each, or on PostgreSQL one statement for both. A batch on PostgreSQL is then two
  round trips (the reads, the inserts: call_batches.py runs them without a transaction)
  whatever its size.

`store_starts_now` and `read_numbers_now` are synchronous (SQLite on the loop's thread,
sqlite_inline.py); `store_starts` and `read_numbers` run the same code on an `AsyncConnection`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core.events import Event
from calltracking.core.records import CallKey, Resolution
from calltracking.store import schema as t
from calltracking.store.bulk_insert import insert_tables_now
from calltracking.store.call_start_facts import (
    CallStart,
    Facts,
    NumbersSeen,
    read_callers,
    stored_calls,
    visits_by_id,
)
from calltracking.store.call_start_facts import read_numbers as read_numbers_apart
from calltracking.store.call_start_read_pg import read_all
from calltracking.store.call_start_rows import new_call
from calltracking.store.calls import resolution_of, session_from_row

__all__ = [
    "CallStart",
    "NumbersSeen",
    "read_numbers",
    "read_numbers_now",
    "store_starts",
    "store_starts_now",
]


def read_numbers_now(conn: Connection, starts: Sequence[CallStart]) -> NumbersSeen:
    """The facts that attribute `starts` (call_start_facts.read_numbers); on PostgreSQL in one
    statement with the callers' facts and the batch's stored keys (call_start_read_pg.py)."""
    if conn.dialect.name == "postgresql":
        facts, stored = read_all(conn, starts)
        return NumbersSeen(facts, stored=stored)
    return read_numbers_apart(conn, starts)


async def read_numbers(conn: AsyncConnection, starts: Sequence[CallStart]) -> NumbersSeen:
    """`read_numbers_now` on an async connection (any: the leases visible at once)."""
    return await conn.run_sync(read_numbers_now, starts)


Unwanted = Callable[[Event], bool]


async def store_starts(
    conn: AsyncConnection,
    starts: Sequence[CallStart],
    numbers: NumbersSeen,
    unwanted: Unwanted | None = None,
) -> list[Resolution]:
    """`store_starts_now` on an async write transaction."""
    return await conn.run_sync(store_starts_now, starts, numbers, unwanted)


def store_starts_now(
    conn: Connection,
    starts: Sequence[CallStart],
    numbers: NumbersSeen,
    unwanted: Unwanted | None = None,
) -> list[Resolution]:
    """Store the calls of `starts` not stored yet, attributed from `numbers`; each one's
    resolution, in order. `conn` is a write transaction, or on PostgreSQL a connection that
    commits each statement (the inserts are then one statement: all or nothing)."""
    if numbers.stored is None:
        done = _stored_resolutions(conn, {s.key for s in starts})
    else:  # read with the numbers, in this transaction (PostgreSQL)
        done = _stored_resolutions(conn, numbers.stored) if numbers.stored else {}
    fresh: dict[CallKey, CallStart] = {}
    for start in starts:
        if start.key not in done:
            fresh.setdefault(start.key, start)
    if fresh:
        facts = numbers.facts
        if numbers.stored is None:
            read_callers(conn, list(fresh.values()), facts)
        # PostgreSQL: both in one statement (one round trip); elsewhere an executemany each.
        insert_tables_now(conn, new_rows(fresh.values(), facts, done, unwanted))
    return [done[s.key] for s in starts]


def new_rows(
    fresh: Iterable[CallStart],
    facts: Facts,
    done: dict[CallKey, Resolution],
    unwanted: Unwanted | None,
) -> list[tuple[sa.Table, list[dict[str, Any]]]]:
    """The rows of new calls (none of them stored) and of their `call.started` events, for one
    statement (bulk_insert.py); each call's resolution goes into `done`."""
    rows, events = [], []
    for start in fresh:
        row, resolution, event = new_call(start, facts)
        rows.append(row)
        events.append(event)
        done[start.key] = resolution
    now = datetime.now(UTC)
    outbox = [
        {
            "event_id": e.id,
            "key": e.key,
            "payload": e.to_json(),
            "occurred_at": e.occurred_at,
            "published_at": now if unwanted is not None and unwanted(e) else None,
        }
        for e in events
    ]
    return [(t.calls, rows), (t.outbox, outbox)]


def _stored_resolutions(conn: Connection, keys: Collection[CallKey]) -> dict[CallKey, Resolution]:
    """The frozen resolutions of the keys already stored."""
    stored = stored_calls(conn, keys)
    if not stored:
        return {}
    visits = visits_by_id(conn, {r.visit_id for r in stored.values() if r.visit_id})
    done = {}
    for key, row in stored.items():
        visit = visits.get(row.visit_id) if row.visit_id else None
        done[key] = resolution_of(row, session_from_row(visit) if visit is not None else None)
    return done

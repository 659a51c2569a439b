"""A batch of call starts on PostgreSQL straight through asyncpg, on a connection kept for them.

Why: a batch is two statements (call_start_read_pg.py's read, bulk_insert.py's insert), yet
through SQLAlchemy's async layer it also paid a pool checkout and check-in, switches between
greenlets, an execution context per statement and the adapter's cursor: ~0.9 ms of CPU for a
batch of one call, against ~0.1 ms for its two round trips on a bare asyncpg connection
(docs/benchmarks.md). Under load a FastAGI process ran a batch every few dialogues, so that
overhead was a fifth of a dialogue's CPU.

Rules:
- The same SQL, parameters and rows as the SQLAlchemy path (`fetch_rows`, `insert_tables_on`:
  the statements and converters are shared), on a connection from the Database's own pool
  (so it has SQLAlchemy's codecs: JSON decoded as `Connection.execute` decodes it), checked out
  once and kept while it works. Batches run one at a time (call_batches.py), so one is enough.
- Each statement commits on its own, as `Database.statements()` does: the insert of the calls
  with their outbox rows is one statement, all or nothing. The commit watchers (outbox_watch.py)
  do not see it: the batcher calls its `committed` hook after each batch.
- A batch with a key already stored (the AMI listener came first) is not handled here: `store`
  returns None and the batcher takes its general path, which answers stored keys from their
  rows. So does a unique-key conflict on the insert (a key stored meanwhile).
- A connection that fails (the database restarted, a proxy cut it) is invalidated and the
  next batch checks out another; the batcher runs the failed batch again, which finds by its
  keys whatever the lost statement stored.
- The kept connection runs its statements on generic plans with sequential scans ruled out
  (`SESSION_SETTINGS`, one round trip when it is checked out). PostgreSQL's own choice stayed a
  custom plan for the read, planned afresh for every batch: more of the server's time than
  running it (2.5 against 1.5 ms a batch, measured), CPU a host that runs both the database and
  the tracker takes from the tracker (docs/benchmarks.md). A generic plan is made once, from the
  statistics of that moment: on a fresh tracker's empty tables it would scan them, and keep
  scanning as they grew until the next ANALYZE (never, with autovacuum off). Every set of the
  read is an index probe by design (call_start_read_pg.py), so without sequential scans the plan
  made on an empty table is the one a big table needs (tests/store/test_call_start_read_pg.py).
  The settings are this connection's only: it never goes back to the pool (`close` invalidates
  it).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core.records import CallKey, Resolution
from calltracking.store import bulk_insert
from calltracking.store.call_start_facts import CallStart
from calltracking.store.call_start_read_pg import read_all_on
from calltracking.store.call_starts import Unwanted, new_rows
from calltracking.store.db import Database

log = logging.getLogger(__name__)
# Statements through the kept connection: planned once, never a scan (module docstring).
SESSION_SETTINGS = "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off"


class PgCallStarts:
    def __init__(self, db: Database, unwanted: Unwanted | None = None) -> None:
        if db.is_sqlite:
            raise ValueError("PgCallStarts is for PostgreSQL")
        self._db = db
        self._unwanted = unwanted
        self._conn: AsyncConnection | None = None
        self._raw: Any = None  # its asyncpg connection

    async def store(self, starts: Sequence[CallStart]) -> list[Resolution] | None:
        """Store the new calls of `starts` and return each one's resolution, in order; None
        (nothing written) when one of their keys is stored already."""
        driver = await self._driver()
        dialect = self._db.engine.dialect
        facts, stored = await read_all_on(driver, dialect, starts)
        if stored:
            return None
        done: dict[CallKey, Resolution] = {}
        fresh: dict[CallKey, CallStart] = {}
        for start in starts:  # a key twice in one batch: its first start
            fresh.setdefault(start.key, start)
        rows = new_rows(fresh.values(), facts, done, self._unwanted)
        await bulk_insert.insert_tables_on(driver, dialect, rows)
        return [done[s.key] for s in starts]

    async def drop(self) -> None:
        """Give up the connection after a failure: the next batch takes another."""
        conn, self._conn, self._raw = self._conn, None, None
        if conn is not None:
            try:
                await conn.invalidate()
                await conn.close()
            except Exception:
                log.debug("call starts: could not close a connection let go", exc_info=True)

    async def close(self) -> None:
        """Let the connection go as after a failure: not back to the pool, which would hand
        out its settings."""
        await self.drop()

    async def _driver(self) -> Any:
        if self._raw is None:
            conn = await self._db.engine.connect()
            try:
                raw: Any = (await conn.get_raw_connection()).driver_connection
                await raw.execute(SESSION_SETTINGS)
            except BaseException:
                with contextlib.suppress(Exception):  # half set up: never back to the pool
                    await conn.invalidate()
                await conn.close()
                raise
            self._conn, self._raw = conn, raw
        return self._raw

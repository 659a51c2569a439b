"""Tells the relay (and the exporters) that outbox rows were committed, so none of them polls.

Rules:
- In this process: any write transaction of `db` (through either of its write engines, db.py)
  that inserted into `outbox` calls `on_commit()` once, after the commit completed (when its
  connection goes back to the pool), never after a rollback. Every writer is covered (visitor
  batches, calls, the API) without calling anything itself; calling the hook by hand as well is
  harmless.
- Across processes (PostgreSQL): a statement trigger on `outbox` (migration 0007a) sends
  `NOTIFY calltracking_outbox` in the same transaction, which PostgreSQL delivers only on
  commit; `listen_outbox` turns those into `on_commit()` calls in another process (e.g.
  `--only workers` relaying what `--only agi` wrote). Every writer is covered, whatever its
  driver, without a round trip of its own. A lost listener
  connection is reconnected; the loops' fallback interval covers the gap.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from calltracking.bus.wake import sleep_until
from calltracking.store.bulk_insert import INSERTS_INTO
from calltracking.store.db import Database
from calltracking.store.schema import outbox

log = logging.getLogger(__name__)
CHANNEL = "calltracking_outbox"
RECONNECT_S = 5.0
_WROTE = "calltracking.outbox_written"
_COMMITTED = "calltracking.outbox_committed"


def watch_commits(db: Database, on_commit: Callable[[], None]) -> None:
    """Call `on_commit` after each committed transaction of `db` that wrote outbox rows."""

    def after_execute(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        if conn.info.get(_WROTE) or not _inserts_into_outbox(context):
            return
        conn.info[_WROTE] = True

    def on_commit_event(conn: Any) -> None:
        if conn.info.pop(_WROTE, False):
            conn.info[_COMMITTED] = True

    def on_rollback(conn: Any) -> None:
        # A connection lost mid-transaction has no info to clear (its record starts afresh),
        # and reading it would raise over the error that says the database is away.
        if not conn.invalidated:
            conn.info.pop(_WROTE, None)

    def on_checkin(dbapi_connection: Any, record: Any) -> None:
        # The commit has completed by the time the connection is handed back.
        if record is not None and record.info.pop(_COMMITTED, False):
            on_commit()

    for writer in db.write_engines:
        engine = writer.sync_engine
        sa.event.listen(engine, "after_cursor_execute", after_execute)
        sa.event.listen(engine, "commit", on_commit_event)
        sa.event.listen(engine, "rollback", on_rollback)
        sa.event.listen(engine, "checkin", on_checkin)


def _inserts_into_outbox(context: Any) -> bool:
    if context is None:
        return False
    if context.execution_options.get(INSERTS_INTO) == outbox.name:  # store/bulk_insert.py
        return True
    if not getattr(context, "isinsert", False):
        return False
    compiled = getattr(context, "compiled", None)
    return getattr(getattr(compiled, "statement", None), "table", None) is outbox


async def listen_outbox(
    database_url: str, on_commit: Callable[[], None], stop: asyncio.Event | None = None
) -> None:
    """PostgreSQL only: call `on_commit` on every `NOTIFY calltracking_outbox`, until `stop`
    is set (or cancelled)."""
    import asyncpg  # type: ignore[import-untyped]

    dsn = sa.engine.make_url(database_url).set(drivername="postgresql")
    dsn_text = dsn.render_as_string(hide_password=False)
    stop = stop or asyncio.Event()
    while not stop.is_set():
        try:
            conn = await asyncpg.connect(dsn_text)
        except Exception as exc:
            log.warning("outbox listener: cannot connect (%s); retrying in %s s", exc, RECONNECT_S)
            await sleep_until(RECONNECT_S, stop)
            continue
        try:
            await _listen(conn, on_commit, stop)
        finally:
            if not conn.is_closed():
                await conn.close()
        if not stop.is_set():
            log.warning("outbox listener: connection lost; reconnecting")
            await sleep_until(RECONNECT_S, stop)


async def _listen(conn: Any, on_commit: Callable[[], None], stop: asyncio.Event) -> None:
    """Until `conn` is lost or `stop` is set."""
    lost = asyncio.Event()
    conn.add_termination_listener(lambda _conn: lost.set())
    await conn.add_listener(CHANNEL, lambda *_args: on_commit())
    on_commit()  # whatever was committed while we were not listening
    await sleep_until(None, lost, stop)

"""Call starts in group commits: the FastAGI's `CallRecorder`, answering only after the commit.

Rules:
- `start_call` queues the start; whoever finds no drain running starts one, which (inline on
  SQLite) lets the loop turn once, so that turn's starts join the batch, then takes up to
  `batch_max` queued starts at a time, reads their numbers' facts (call_starts.read_numbers)
  and stores them in one write transaction (call_starts.store_starts). Through aiosqlite the
  read comes first, outside the write lock. On PostgreSQL the batch is two statements and no
  transaction: one for every read, one for the calls and their outbox rows (atomic as every
  statement; a conflict fails it whole), straight through asyncpg on a connection the batcher
  keeps (call_starts_pg.py; SQLAlchemy's async layer cost more CPU than the batch's own work).
  BEGIN and COMMIT would add two round trips, a third of a batch's wait under load, and guard
  nothing: under READ COMMITTED the read holds off no writer either way, and a key stored in
  between (the AMI listener) fails the insert, so the batch runs again and answers it from the
  stored row (a batch with a stored key takes the SQLAlchemy path: call_starts_pg.py). On a
  SQLite file both run synchronously on the loop's thread, in the write transaction
  (sqlite_inline.py: a batch is then a few milliseconds on the loop, not ~40 hops to
  aiosqlite's thread), holding the Database's writer turn; when SQLite would have to wait
  (another process writes), that batch goes through the async engine. A caller's future is
  resolved only after that transaction has committed: the PBX is never told an attribution
  whose call row is not in the database, even if the process dies or the database fails
  between the answer and the commit (there is no such gap).
- On the loop's thread (the inline SQLite path) a batch never suspends, so under load a batch
  would hold only the starts of one or two turns of the loop, and each batch's fixed work (its
  reads, two inserts and a commit) would be shared by ~4 calls. When the previous batch was
  shared (it held two starts or more: starts are arriving faster than batches run), the next
  one first waits `window` (BATCH_WINDOW_S, 2 ms): at 32 dialogues at a time that made
  1.4x the dialogues a second for 0.65x the CPU each (docs/benchmarks.md). A lone start (an
  idle tracker, or one call at a time) is never kept waiting. On PostgreSQL the next batch
  gathers while one awaits its round trips, but those are short on their own connection: each
  batch after a shared one waits the same window there, which made 1.2x the dialogues a second
  for 0.87x the CPU each.
- A batch that meets a unique-key conflict (the AMI listener stored one of its calls meanwhile,
  through `SqlCallRecorder`) is run again whole: the conflicting key is then found stored and
  answered with that row's frozen attribution. So is a batch whose connection turned out dead
  (one a database restart left in the pool; without a COMMIT nothing else would notice): on a
  new connection, it finds whatever the lost statement stored by its keys. Any other failure,
  or the last attempt's, fails that batch's callers (the dialogue then reports its error to
  the dialplan) and the next batch starts afresh.
- Every other report (answer, end, recordings, open calls) goes to the wrapped recorder.
- An inline commit, and a PostgreSQL batch on its own connection, calls `committed` (the relay's
  wake-up: `Services.outbox_written`), as every commit through the Database's engine does by
  itself (outbox_watch.py); without it the `call.started` rows of a quiet tracker would wait
  for the relay's fallback round.
- The drain task is owned: `close()` waits for it; a start queued after `close()` is refused.
  Inline commits are reported to `Database.committed_without_checkpoint` (their connection
  never checkpoints; the Database checkpoints off the loop now and then).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError

from calltracking.core.kinds import CallStatus
from calltracking.core.records import CallKey, OpenCall, Resolution
from calltracking.ports import CallRecorder
from calltracking.store.call_starts import (
    CallStart,
    Unwanted,
    read_numbers,
    read_numbers_now,
    store_starts,
    store_starts_now,
)
from calltracking.store.call_starts_pg import PgCallStarts
from calltracking.store.db import Database
from calltracking.store.kept_transactions import CONNECTION_LOST
from calltracking.store.sqlite_inline import Busy, InlineSqlite, usable

log = logging.getLogger(__name__)
BATCH_MAX = 256
BATCH_WINDOW_S = 0.002
ATTEMPTS = 4

_Queued = tuple[CallStart, "asyncio.Future[Resolution]"]


class CallStartBatcher:
    def __init__(
        self,
        db: Database,
        recorder: CallRecorder,
        *,
        batch_max: int = BATCH_MAX,
        committed: Callable[[], None] | None = None,
        window: Callable[[], Awaitable[None]] | None = None,
        unwanted: Unwanted | None = None,
    ) -> None:
        self.db = db
        # Which `call.started` events no consumer would take: written published (call_starts.py).
        self._unwanted = unwanted
        # Called after each inline commit: those bypass the engine that outbox_watch.py watches.
        self._committed = committed
        self._recorder = recorder
        self._batch_max = batch_max
        # How an inline batch under load gathers more starts (a parameter for the tests).
        self._window = window or partial(asyncio.sleep, BATCH_WINDOW_S)
        self._last_batch = 0  # starts in the previous batch
        self._queue: list[_Queued] = []
        self._drain: asyncio.Task[None] | None = None
        self._closed = False
        self._inline = InlineSqlite(db.url) if usable(db.url) else None
        self._pg = None if db.is_sqlite else PgCallStarts(db, unwanted)
        self.batches = 0  # committed, for tests and benchmarks
        self.fallbacks = 0  # inline batches SQLite would have made wait, run through the engine

    async def start_call(
        self, key: CallKey, did: str, caller: str | None, at: datetime
    ) -> Resolution:
        if self._closed:
            raise RuntimeError("CallStartBatcher is closed")
        future: asyncio.Future[Resolution] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_seen)
        self._queue.append((CallStart(key, did, caller, at), future))
        if self._drain is None or self._drain.done():
            self._drain = asyncio.create_task(self._run(), name="agi-call-starts")
        # A caller cut by its budget stops waiting; its start still commits with the batch.
        return await asyncio.shield(future)

    async def close(self) -> None:
        """Refuse new starts and wait until the queued ones are stored (or failed)."""
        self._closed = True
        if self._drain is not None:
            await self._drain
        if self._inline is not None:
            self._inline.close()
        if self._pg is not None:
            await self._pg.close()

    async def _run(self) -> None:
        if self._inline is not None:
            # An inline batch never suspends, so nothing joins it while it runs: one more turn
            # of the loop first lets that turn's starts share its transaction (3.1 -> 3.8 a
            # batch at ~1,100 dialogues/s; no cost on an idle loop).
            await asyncio.sleep(0)
            if self._last_batch > 1:
                await self._window()  # under load: a moment more (module docstring)
        while self._queue:
            if self._pg is not None and self._last_batch > 1:
                # A PostgreSQL batch gathers starts while it awaits its round trips, but those
                # are short: under load each batch waits the window too (module docstring).
                await self._window()
            batch, self._queue = self._queue[: self._batch_max], self._queue[self._batch_max :]
            try:
                resolutions = await self._store([start for start, _ in batch])
            except Exception as exc:
                log.exception(
                    "call starts: a batch of %d failed (first %s)", len(batch), batch[0][0].key
                )
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.batches += 1
            self._last_batch = len(batch)
            for (_, future), resolution in zip(batch, resolutions, strict=True):
                if not future.done():
                    future.set_result(resolution)

    async def _store(self, starts: list[CallStart]) -> list[Resolution]:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return await self._store_once(starts)
            except (IntegrityError, asyncpg.UniqueViolationError):
                if attempt == ATTEMPTS:
                    raise
                log.info("call starts: a batch of %d met a stored call; again", len(starts))
            except DBAPIError as exc:
                # A pooled connection found dead (the database restarted, a proxy dropped it):
                # SQLAlchemy has invalidated it, so the next attempt takes a new one. Calls the
                # lost statement may have stored are found by their keys, as above.
                if not exc.connection_invalidated or attempt == ATTEMPTS:
                    raise
                log.info("call starts: the database connection was lost; the batch again")
            except CONNECTION_LOST:
                # The same on the batches' own asyncpg connection (call_starts_pg.py): the next
                # attempt, or the next batch, takes another.
                if self._pg is None:
                    raise
                await self._pg.drop()
                if attempt == ATTEMPTS:
                    raise
                log.info("call starts: the database connection was lost; the batch again")
        raise AssertionError("unreachable")

    async def _store_once(self, starts: list[CallStart]) -> list[Resolution]:
        if self._inline is not None:
            try:
                return await self._store_inline(self._inline, starts)
            except Busy as exc:
                self.fallbacks += 1
                log.info("call starts: SQLite busy (%s); through the engine", exc)
        if self._pg is not None:
            resolutions = await self._pg.store(starts)
            if resolutions is not None:
                if self._committed is not None:
                    self._committed()  # the batch's `call.started` rows are in: wake the relay
                return resolutions
            # A key of the batch is stored already: the path below answers it from its row.
        if self.db.is_sqlite:
            # The engine's writer holds SQLite's one write lock: read before taking it.
            async with self.db.read() as conn:
                numbers = await read_numbers(conn, starts)
            async with self.db.write() as conn:
                return await store_starts(conn, starts, numbers, self._unwanted)
        # PostgreSQL: the reads are one statement and the writes one more (the calls with their
        # outbox rows, atomic as any statement), so a transaction around them would add BEGIN
        # and COMMIT and protect nothing (module docstring).
        async with self.db.statements() as conn:
            numbers = await read_numbers(conn, starts)
            return await store_starts(conn, starts, numbers, self._unwanted)

    async def _store_inline(
        self, inline: InlineSqlite, starts: list[CallStart]
    ) -> list[Resolution]:
        async with self.db.writer_turn():
            # The read inside the write transaction: on the loop's thread the lock is held for
            # the same synchronous stretch either way, and one transaction costs less than two.
            resolutions = inline.write(_read_and_store, starts, self._unwanted)
        self.db.committed_without_checkpoint()
        if self._committed is not None:
            self._committed()  # the batch's `call.started` rows are in: wake the relay
        return resolutions

    # -- everything else is the wrapped recorder's -------------------------------------------

    async def answer_call(self, key: CallKey, at: datetime, answered_by: str | None) -> None:
        await self._recorder.answer_call(key, at, answered_by)

    async def end_call(
        self,
        key: CallKey,
        at: datetime,
        status: CallStatus,
        hangup_cause: int | None = None,
        *,
        reconciled: bool = False,
    ) -> None:
        await self._recorder.end_call(key, at, status, hangup_cause, reconciled=reconciled)

    async def name_recording(self, key: CallKey, asterisk_path: str) -> None:
        await self._recorder.name_recording(key, asterisk_path)

    async def confirm_recording(self, key: CallKey, size_bytes: int) -> None:
        await self._recorder.confirm_recording(key, size_bytes)

    async def open_calls(self, pbx_id: str) -> list[OpenCall]:
        return await self._recorder.open_calls(pbx_id)


def _read_and_store(
    conn: Connection, starts: list[CallStart], unwanted: Unwanted | None
) -> list[Resolution]:
    return store_starts_now(conn, starts, read_numbers_now(conn, starts), unwanted)


def _seen(future: asyncio.Future[Resolution]) -> None:
    """Mark a failure retrieved: a dialogue that ran out of budget no longer awaits it, and the
    batch's failure was logged once already."""
    if not future.cancelled():
        future.exception()

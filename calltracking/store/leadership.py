"""One process at a time: of several processes that could do a job, the one holding its lock
does it. Used by the AMI listener (one listener per Asterisk) and the outbox relay (one relay
per database: every process relaying the same rows published each event once per process).

Rules:
- On PostgreSQL the active process holds a session advisory lock (`advisory_key` of the job's
  name), on a connection of its own (a one-connection engine, never the pool: closing it is
  what frees the lock). A standby tries `pg_try_advisory_lock` every `poll_s` (1 s).
- The lock lives as long as its connection: a process that dies (SIGKILL included) frees it
  when PostgreSQL sees the socket close, and a standby takes over on its next try. The active
  process checks its connection every `poll_s`; if the check fails it stops the work at once
  (another process may hold the lock by now) and goes back to trying.
- Each term of office runs a fresh `work()`: the AMI listener logs in and reconciles
  (CoreShowChannels + the store's open calls), so calls the previous holder followed are
  adopted, not doubled (the store keys calls by PBX and Linkedid); the relay publishes what is
  still unmarked, which consumers deduplicate.
- A job may rank its processes (`Standing`). A PREFERRED process holds a shared advisory lock,
  the job's marker, for as long as its lock connection lives. A FALLBACK process takes the job
  only while no process holds the marker (it tries the marker exclusively for the length of one
  statement, then the job's lock), and while active it looks for the marker at every check:
  found held twice in a row (a preferred process is up, not another fallback's probe), it
  stops the work, lets go of the lock and stands by. The relay uses it so that a process with
  the workers part relays and the web nodes, whose loop serves sockets, relay only while no
  such process runs (docs/architecture.md).
- On SQLite (one process by design) there is no lock: `work()` just runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Coroutine
from enum import Enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from calltracking.bus.wake import sleep_until
from calltracking.quiet_log import QuietLog

log = logging.getLogger(__name__)
POLL_S = 1.0
Work = Callable[[], Coroutine[Any, Any, None]]


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for `pg_advisory_lock`, one per job name."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def ami_job(pbx_id: str) -> str:
    return f"calltracking-ami:{pbx_id}"


RELAY_JOB = "calltracking-outbox-relay"


class Standing(Enum):
    """How a process ranks among those that could do a job (the module's rules)."""

    EQUAL = "equal"  # first come, first served
    PREFERRED = "preferred"  # holds the job's marker; fallbacks stand aside for it
    FALLBACK = "fallback"  # does the job only while no preferred process is up


class _SteppedAside(Exception):
    """A fallback found a preferred process up and stopped its work."""


class Leadership:
    """Runs `work()` only while this process holds the job's lock (`run`); `what` names the
    job in log lines."""

    def __init__(
        self,
        database_url: str,
        job: str,
        what: str,
        *,
        poll_s: float = POLL_S,
        standing: Standing = Standing.EQUAL,
    ) -> None:
        self._url = database_url
        self._what = what
        self._key = advisory_key(job)
        self._marker = advisory_key(f"{job}:preferred")
        self._standing = standing
        self._poll = poll_s
        self._failures = QuietLog(log, f"{what}: lock connection failed; retrying")
        self.active = False
        self._marked = False  # a preferred process's marker, on its current lock connection
        self._marker_held = 0  # a fallback's checks in a row that found the marker held
        self.terms = 0  # how many times this process became active

    @property
    def needs_lock(self) -> bool:
        return not self._url.startswith("sqlite")

    async def run(self, work: Work, until: asyncio.Event | None = None) -> None:
        """Until cancelled (or `until` is set): wait for the lock, run `work` while it is
        held, repeat."""
        if not self.needs_lock:
            self.active = True
            await work()
            return
        engine = create_async_engine(self._url, poolclass=NullPool)
        try:
            while until is None or not until.is_set():
                try:
                    await self._one_term(engine, work, until)
                except (OSError, TimeoutError, sa.exc.SQLAlchemyError) as exc:
                    # Every relaying process tries once a second while the database is away:
                    # one line a minute each, not sixty.
                    self._failures.failed(exc, time.monotonic())
                await sleep_until(self._poll, until)
        finally:
            await engine.dispose()

    async def run_if_free(self, work: Work) -> bool:
        """Run `work` once if no other process holds the job's lock (holding it meanwhile);
        False, without running it, if one does: that process does the job."""
        if not self.needs_lock:
            await work()
            return True
        engine = create_async_engine(self._url, poolclass=NullPool)
        try:
            async with engine.connect() as raw:
                conn = await raw.execution_options(isolation_level="AUTOCOMMIT")
                if not await self._try(conn):
                    return False
                # Closing the connection frees the lock, whatever `work` did.
                await work()
                return True
        finally:
            await engine.dispose()

    async def _one_term(self, engine: AsyncEngine, work: Work, until: asyncio.Event | None) -> None:
        async with engine.connect() as raw:
            conn = await raw.execution_options(isolation_level="AUTOCOMMIT")
            self._failures.recovered()  # connected again
            self._marked = False
            if not await self._try(conn):
                log.info("%s: standby (another process holds the lock)", self._what)
                # Polling is the point: nothing tells a standby that the lock came free.
                while not await self._try(conn):
                    await sleep_until(self._poll, until)
                    if until is not None and until.is_set():
                        return
            self.active, self.terms = True, self.terms + 1
            log.info("%s: active (lock held)", self._what)
            try:
                await self._hold(conn, work)
            except _SteppedAside:
                log.info("%s: a preferred process is up; standing aside for it", self._what)
            finally:
                self.active = False
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self._poll * 5):
                        unlock = sa.text("SELECT pg_advisory_unlock(:k)")
                        await conn.execute(unlock, {"k": self._key})

    async def _try(self, conn: AsyncConnection) -> bool:
        if self._standing is Standing.PREFERRED and not self._marked:
            # Shared: preferred processes never keep each other out. Tried again at each
            # attempt, as a fallback's probe holds the marker for an instant.
            marked = sa.text("SELECT pg_try_advisory_lock_shared(:m)")
            self._marked = bool(await conn.scalar(marked, {"m": self._marker}))
        if self._standing is Standing.FALLBACK:
            # The marker's exclusive probe lasts one statement (autocommit); CASE takes the
            # job's lock only when no preferred process holds the marker.
            sql = (
                "SELECT CASE WHEN pg_try_advisory_xact_lock(:m)"
                " THEN pg_try_advisory_lock(:k) ELSE false END"
            )
            return bool(await conn.scalar(sa.text(sql), {"m": self._marker, "k": self._key}))
        got = await conn.scalar(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key})
        return bool(got)

    async def _check(self, conn: AsyncConnection) -> None:
        """The lock connection still answers; a fallback also looks for a preferred process."""
        if self._standing is not Standing.FALLBACK:
            await conn.execute(sa.text("SELECT 1"))
            return
        free = await conn.scalar(
            sa.text("SELECT pg_try_advisory_xact_lock(:m)"), {"m": self._marker}
        )
        # Twice in a row: another fallback's probe holds the marker for an instant too.
        self._marker_held = 0 if free else self._marker_held + 1
        if self._marker_held >= 2:
            raise _SteppedAside

    async def _hold(self, conn: AsyncConnection, work: Work) -> None:
        """Run `work` until it ends or the lock's connection fails a check."""
        task: asyncio.Task[None] = asyncio.create_task(work(), name=self._what)
        self._marker_held = 0
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=self._poll)
                if not task.done():
                    async with asyncio.timeout(max(self._poll, 1.0) * 5):
                        await self._check(conn)
            await task
        except (_SteppedAside, asyncio.CancelledError):
            raise  # logged by the caller, or the process is stopping: no connection was lost
        except BaseException:
            if not task.done():
                log.warning("%s: lock connection lost; stopping", self._what)
            raise
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

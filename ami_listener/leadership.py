"""AMI fail-over: of several `--only ami` processes per Asterisk, exactly one listens.

Rules:
- On PostgreSQL the active process holds a session advisory lock keyed by the PBX id
  (`lock_key`), on a connection of its own (a one-connection engine, never the pool: closing it
  is what frees the lock). A standby tries `pg_try_advisory_lock` every `poll_s` (1 s).
- The lock lives as long as its connection: a process that dies (SIGKILL included) frees it
  when PostgreSQL sees the socket close, and a standby takes over on its next try. The active
  process checks its connection every `poll_s`; if the check fails it stops listening at once
  (another process may hold the lock by now) and goes back to trying.
- Each term of office runs a fresh `work()` (a new listener): it logs in and reconciles
  (CoreShowChannels + the store's open calls), so calls the previous holder followed are
  adopted, not doubled (the store keys calls by PBX and Linkedid).
- On SQLite (one process by design) there is no lock: `work()` just runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)
POLL_S = 1.0
Work = Callable[[], Coroutine[Any, Any, None]]


def lock_key(pbx_id: str) -> int:
    """A stable signed 64-bit key for `pg_advisory_lock`, one per PBX id."""
    digest = hashlib.blake2b(f"calltracking-ami:{pbx_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class Leadership:
    """Runs `work()` only while this process holds the PBX's lock (`run`)."""

    def __init__(self, database_url: str, pbx_id: str, *, poll_s: float = POLL_S) -> None:
        self._url = database_url
        self._pbx_id = pbx_id
        self._key = lock_key(pbx_id)
        self._poll = poll_s
        self.active = False
        self.terms = 0  # how many times this process became active

    @property
    def needs_lock(self) -> bool:
        return not self._url.startswith("sqlite")

    async def run(self, work: Work) -> None:
        """Until cancelled: wait for the lock, run `work` while it is held, repeat."""
        if not self.needs_lock:
            self.active = True
            await work()
            return
        engine = create_async_engine(self._url, poolclass=NullPool)
        try:
            while True:
                try:
                    await self._one_term(engine, work)
                except (OSError, TimeoutError, sa.exc.SQLAlchemyError) as exc:
                    log.warning("AMI %s: lock connection failed (%s); retrying", self._pbx_id, exc)
                await asyncio.sleep(self._poll)
        finally:
            await engine.dispose()

    async def _one_term(self, engine: AsyncEngine, work: Work) -> None:
        async with engine.connect() as raw:
            conn = await raw.execution_options(isolation_level="AUTOCOMMIT")
            if not await self._try(conn):
                log.info("AMI %s: standby (another process listens)", self._pbx_id)
                # Polling is the point: nothing tells a standby that the lock came free.
                while not await self._try(conn):  # noqa: ASYNC110
                    await asyncio.sleep(self._poll)
            self.active, self.terms = True, self.terms + 1
            log.info("AMI %s: active (lock held), listening", self._pbx_id)
            try:
                await self._hold(conn, work)
            finally:
                self.active = False
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self._poll * 5):
                        unlock = sa.text("SELECT pg_advisory_unlock(:k)")
                        await conn.execute(unlock, {"k": self._key})

    async def _try(self, conn: AsyncConnection) -> bool:
        got = await conn.scalar(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key})
        return bool(got)

    async def _hold(self, conn: AsyncConnection, work: Work) -> None:
        """Run `work` until it ends or the lock's connection fails a check."""
        task: asyncio.Task[None] = asyncio.create_task(work(), name=f"ami-{self._pbx_id}")
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=self._poll)
                if not task.done():
                    async with asyncio.timeout(max(self._poll, 1.0) * 5):
                        await conn.execute(sa.text("SELECT 1"))
            await task
        finally:
            if not task.done():
                log.warning("AMI %s: lock connection lost; stopping the listener", self._pbx_id)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

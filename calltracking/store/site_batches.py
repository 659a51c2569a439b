"""Group commits per site: calls for one site queue up, and whoever finds the queue idle
drains it in batches, one write transaction each.

Rules:
- A batch takes the site's lock and state version (site_state.py), and with them the ops queued
  while it waited for them. When the version is not the one this node wrote last, the engine
  loads what the other writers changed since (recent_changes.py), or the whole site when their
  list does not reach back that far (or an operator changed the site). The batch's returning
  visitors are restored in one go; every queued op runs on the engine and adds its effects to
  one `BatchWrites`, flushed with a statement per kind of row; the version is bumped (with this
  batch's changes) and the transaction commits. Only then are the ops' callers answered.
- A batch that meets a moved database (StaleState: a reserve number taken meanwhile, or a
  unique index) runs again on a freshly loaded engine, up to ATTEMPTS times: ops are inputs to
  the engine, so replaying them is safe. Any other failure drops the engine (reloaded next
  time) and fails that batch's callers.
- A batch that grew the pool from a reserve offered by an earlier batch re-checks the account's
  `max_numbers` under its row lock (a batch that offered the reserve counted it under that lock).
- On PostgreSQL a batch's transaction runs on a connection kept between batches, begun and
  committed on the driver, its every-batch statements straight through asyncpg
  (kept_transactions.py, driver_write.py); it wakes the relay itself (`outbox_committed`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core.engine import SiteEngine, SiteRules
from calltracking.core.engine.parts import decision_key, part_of
from calltracking.store import recent_changes, site_state
from calltracking.store.db import Database
from calltracking.store.decider_state import (
    catch_up,
    load_engine,
    offer_reserve,
    restore_visitors,
    rules_of,
)
from calltracking.store.decider_writes import BatchWrites, StaleState
from calltracking.store.ids import new_id, time_ordered_id
from calltracking.store.kept_transactions import KeptConnections
from calltracking.store.number_moves import account_room
from calltracking.store.sites import Site, get_site

log = logging.getLogger(__name__)
BATCH_MAX = 500
ATTEMPTS = 4
# A unique index met (the database moved under the engine): through SQLAlchemy, or straight
# through asyncpg on PostgreSQL's kept connections (kept_transactions.py).
_CONSTRAINT_VIOLATED = (IntegrityError, asyncpg.IntegrityConstraintViolationError)

Op = Callable[[AsyncConnection, SiteEngine, BatchWrites], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Item:
    op: Op
    now: datetime
    future: asyncio.Future[Any]
    visitor: str | None = None  # restored with the whole batch's, before any op runs


@dataclass
class Slot:
    site: Site
    part: int | None = None  # a split site's part (core/engine/parts.py); None: the whole site
    engine: SiteEngine | None = None
    version: int = -1  # the site's, or the part's own
    site_version: int = -1  # a part's: the site's version it loaded (an operator's change)
    pending: list[Item] = field(default_factory=list)
    drain: asyncio.Task[None] | None = None
    # What the versions up to `version` changed, as far as this node knows (recent_changes.py).
    changes: list[recent_changes.Change] = field(default_factory=list)
    # The rules of `site` as this slot applies them, and the `site` they were made from: a
    # part's share of the pool is a new settings object, made again only when `site` is new.
    rules: tuple[Site, SiteRules] | None = None


class SiteBatches:
    def __init__(self, db: Database, node_id: str) -> None:
        self.db = db
        self.node_id = node_id
        self.slots: dict[str, Slot] = {}
        self.batches = 0
        self.reloads = 0  # whole-site loads
        self.catch_ups = 0  # loads of what another writer changed, from its recent changes
        self.committed: Callable[[], None] = _nothing  # after each committed batch
        # After a committed batch that wrote outbox rows where the commit watchers do not see
        # it (outbox_watch.py): on PostgreSQL's kept connections (kept_transactions.py).
        self.outbox_committed: Callable[[], None] = _nothing
        self._kept = None if db.is_sqlite else KeptConnections(db)

    def next_due(self) -> datetime | None:
        """The earliest due time across the sites loaded here (None: nothing is due)."""
        dues = [slot.engine.next_due() for slot in self.slots.values() if slot.engine is not None]
        return min((due for due in dues if due is not None), default=None)

    async def close(self, grace_s: float = 5.0) -> None:
        """Let queued batches commit (the last tabs' closes among them); cancel what is left
        after `grace_s`."""
        drains = [s.drain for s in self.slots.values() if s.drain and not s.drain.done()]
        if drains:
            await asyncio.wait(drains, timeout=grace_s)
        for task in drains:
            task.cancel()
        await asyncio.gather(*drains, return_exceptions=True)
        if self._kept is not None:
            await self._kept.close()

    async def submit(
        self,
        site: Site,
        op: Op,
        now: datetime,
        visitor: str | None = None,
        part: int | None = None,
    ) -> Any:
        """Run `op` in the next group commit of the site, or of its part `part` when it is
        split (`site.decision_parts` > 1); answered after that commit."""
        if site.decision_parts > 1 and part is None:
            if visitor is None:
                raise ValueError(f"site {site.id} is split: a change needs its part")
            part = part_of(visitor, site.decision_parts)
        key = slot_key(site, part)
        slot = self.slots.get(key)
        if slot is None:  # later batches take the site as the database has it
            slot = self.slots[key] = Slot(site, part if site.decision_parts > 1 else None)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        slot.pending.append(Item(op, now, future, visitor))
        if slot.drain is None or slot.drain.done():
            slot.drain = asyncio.ensure_future(self._drain(slot))
        # No shield: a caller cancelled while it waits cancels only its future, which the batch
        # then leaves unanswered (`_run` answers futures not done); its op runs all the same.
        return await future

    async def _drain(self, slot: Slot) -> None:
        while slot.pending:
            batch, slot.pending = slot.pending[:BATCH_MAX], slot.pending[BATCH_MAX:]
            await self._run(slot, batch)

    async def _run(self, slot: Slot, batch: list[Item]) -> None:
        for attempt in range(ATTEMPTS):
            try:
                results = await self._transaction(slot, batch)
            except (StaleState, *_CONSTRAINT_VIOLATED) as exc:
                slot.engine = None
                log.info(
                    "site %s: state moved (%s); reloading (try %d)", slot.site.id, exc, attempt + 1
                )
                continue
            except SplitChanged as exc:
                # This slot's part no longer exists as it was: its callers route again.
                slot.engine = None
                key = slot_key(slot.site, slot.part)  # slot.site still has the old split
                if self.slots.get(key) is slot:
                    del self.slots[key]
                for item in batch + slot.pending:
                    if not item.future.done():
                        item.future.set_exception(exc)
                slot.pending = []
                return
            except Exception as exc:
                slot.engine = None
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                return
            for item, result in zip(batch, results, strict=True):
                if not item.future.done():
                    item.future.set_result(result)
            return
        error = StaleState(f"site {slot.site.id}: the state kept moving; giving up this batch")
        for item in batch:
            if not item.future.done():
                item.future.set_exception(error)

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[tuple[AsyncConnection, Any]]:
        """A batch's transaction: its connection, and on PostgreSQL that connection's asyncpg
        connection for the statements every batch runs (kept_transactions.py)."""
        if self._kept is None:
            async with self.db.write(on_loop=True) as conn:
                yield conn, None
            return
        async with self._kept.transaction() as tx:
            yield tx.conn, tx.driver

    async def _transaction(self, slot: Slot, batch: list[Item]) -> list[Any]:
        first_now = batch[0].now
        async with self._write() as (conn, driver):
            if slot.part is None:
                version = await site_state.lock_site(conn, slot.site.id, driver)
            else:
                site_version, version = await site_state.lock_part(
                    conn, slot.site.id, slot.part, driver
                )
                if site_version != slot.site_version:  # an operator's change: reload it whole
                    slot.engine = None
                    slot.site_version = site_version
            # Ops queued while the lock was on its way join this batch (so `_run` answers and
            # replays them with it) instead of waiting a whole transaction for the next one.
            room = BATCH_MAX - len(batch)
            if room > 0 and slot.pending:
                batch += slot.pending[:room]
                del slot.pending[:room]
            if slot.engine is not None and version != slot.version:
                await self._catch_up(conn, slot, version, first_now)
            if slot.engine is None:
                fresh = await get_site(conn, slot.site.id)
                if fresh is not None:
                    if fresh.decision_parts != slot.site.decision_parts:
                        raise SplitChanged(fresh)
                    slot.site = fresh
                slot.engine = await load_engine(
                    conn, slot.site, first_now, new_id, time_ordered_id, part=slot.part
                )
                slot.changes = []
                self.reloads += 1
            engine = slot.engine
            if slot.rules is None or slot.rules[0] is not slot.site:
                slot.rules = (slot.site, rules_of(slot.site, slot.part))
            engine.update_rules(slot.rules[1])
            # The account's capacity counted here holds until commit (its row stays locked on
            # PostgreSQL; SQLite writers are serial), so growth within it needs no recount.
            offered = _may_grow(engine, len(batch))
            if offered:
                await offer_reserve(
                    conn, engine, slot.site, first_now, want=len(batch), part=slot.part
                )
            # Returning visitors the engine does not hold (after a restart: all of them) come
            # back in a few queries for the whole batch, not a few each.
            returning = {item.visitor for item in batch if item.visitor} - engine.visitors.keys()
            if returning:
                await restore_visitors(conn, engine, returning, first_now)
            writes = BatchWrites(slot.site.id, self.node_id)
            writes.looked_up |= returning
            results = []
            for item in batch:
                results.append(await item.op(conn, engine, writes))
            # The version's bump, with what this batch changed for other nodes to catch up on
            # (recent_changes.py), rides with the new rows' statement where it can (one round
            # trip fewer per batch on PostgreSQL); it is in this transaction either way.
            changes: list[recent_changes.Change] = []
            bump = None
            if writes:
                numbers, visitors = writes.changes()
                changes = [*slot.changes, recent_changes.Change(version + 1, numbers, visitors)]
                encoded = recent_changes.encode(changes)
                bump = (
                    site_state.bump_statement(slot.site.id, encoded)
                    if slot.part is None
                    else site_state.part_bump_statement(slot.site.id, slot.part, encoded)
                )
            bumped = await writes.flush(conn, engine, bump, driver)
            # Grew from a reserve offered in an earlier batch, or counted without the lock.
            if writes.grown and (not offered or slot.part is not None):
                engine.capacity = await _check_account_limit(conn, slot.site.account_id)
            if bump is not None:
                if not bumped:
                    await site_state.run(conn, bump, driver)
                version += 1
                slot.changes = changes[-recent_changes.KEEP :]
        slot.version = version
        self.batches += 1
        self.committed()
        if driver is not None and writes.outbox:
            self.outbox_committed()
        return results

    async def _catch_up(
        self, conn: AsyncConnection, slot: Slot, version: int, now: datetime
    ) -> None:
        """Another writer moved the site from the version this node wrote last: load just what
        it changed when its recent changes reach back that far, else drop the engine (the
        caller reloads it whole)."""
        assert slot.engine is not None
        stored = await recent_changes.read(conn, slot.site.id, slot.part)
        missed = recent_changes.between(stored, slot.version, version)
        if missed is None:
            log.info(
                "site %s: versions %d..%d are not all in its recent changes; reloading it whole",
                slot.site.id,
                slot.version + 1,
                version,
            )
            slot.engine = None
            return
        numbers = frozenset().union(*(c.numbers for c in missed))
        visitors = frozenset().union(*(c.visitors for c in missed))
        await catch_up(conn, slot.engine, slot.site, numbers, visitors, now)
        log.debug(
            "site %s: caught up on %d versions (%d numbers, %d visitors)",
            slot.site.id,
            len(missed),
            len(numbers),
            len(visitors),
        )
        slot.changes = [c for c in stored if c.version <= version][-recent_changes.KEEP :]
        self.catch_ups += 1


class SplitChanged(Exception):
    """The site's split changed under a part's batch (`calltracking split-site`): the ops go
    again to the part they now belong to (deciders.py)."""

    def __init__(self, site: Site) -> None:
        super().__init__(f"site {site.id} is now decided in {site.decision_parts} parts")
        self.site = site


def slot_key(site: Site, part: int | None) -> str:
    """The site's group commits, or its part's (core/engine/parts.py `decision_key`)."""
    if site.decision_parts <= 1 or part is None:
        return site.id
    return decision_key(site.id, part, site.decision_parts)


def _may_grow(engine: SiteEngine, batch_size: int) -> bool:
    return (
        engine.pool.leasable_count < engine.settings.pool_max
        and engine.capacity > 0
        and len(engine.reserve) < batch_size
    )


async def _check_account_limit(conn: AsyncConnection, account_id: str) -> int:
    """Growth is decided per site; the account's `max_numbers` spans its sites, so a batch
    that grew re-checks it under the account's row lock (rare: only when a pool grows).
    Returns the room left."""
    room = await account_room(conn, account_id)
    if room < 0:
        raise StaleState("another site of the account grew meanwhile")
    return room


def _nothing() -> None:
    return None

"""The visitor lifecycle served from memory: one `SiteEngine` per site, fed by the websocket
and the sweeper, its effects written in group commits.

Rules:
- Calls for one site queue up; whoever finds the queue idle drains it in batches: one write
  transaction per batch takes the site's lock (site_state.py), reloads the engine when the
  site's state version is not the one this node wrote last, applies every queued event to the
  engine, writes all effects with a statement per kind of row, bumps the version and commits.
  Only then are the callers answered: nobody is told a number that is not committed.
- A batch that fails (the database moved under it: a reserve number taken meanwhile, a unique
  index) is run again on a freshly loaded engine; events are inputs, so replaying them is safe.
  Any other failure drops the engine (reloaded next time) and fails that batch's callers.
- `current()` answers from memory when the site's version is still this node's (one read, no
  lock); otherwise it goes through a batch like any change.
- The sweeper ticks only sites with something due, looks for sites this node has not loaded
  (after a restart, or tabs on other nodes) and closes tabs whose node stopped confirming them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core.analytics_ids import ga_client_id, ga_session_id, ym_client_id
from calltracking.core.bots import is_crawler
from calltracking.core.engine import SiteEngine
from calltracking.core.engine import events as ev
from calltracking.core.kinds import AttributionKind, DisplayKind
from calltracking.core.numbers import format_display
from calltracking.store import schema as t
from calltracking.store import site_state
from calltracking.store.db import Database
from calltracking.store.decider_state import (
    account_capacity,
    load_engine,
    offer_reserve,
    restore_visitors,
    rules_of,
)
from calltracking.store.decider_writes import BatchWrites, StaleState
from calltracking.store.outbox import new_id
from calltracking.store.sites import Site, get_site
from calltracking.store.visitors import Hello, Shown, Welcome

log = logging.getLogger(__name__)
TAB_STALE_S = 180.0  # a tab not confirmed by its node for this long has vanished
DISCOVER_EVERY_S = 10.0
STALE_TABS_EVERY_S = 30.0
BATCH_MAX = 500
ATTEMPTS = 4

Op = Callable[[AsyncConnection, SiteEngine, BatchWrites], Awaitable[Any]]


@dataclass
class _Slot:
    site: Site
    engine: SiteEngine | None = None
    version: int = -1
    pending: list[tuple[Op, datetime, asyncio.Future[Any]]] = field(default_factory=list)
    drain: asyncio.Task[None] | None = None


class DeciderService:
    """What the websocket, the hub and the sweeper call: hello, activity, visibility, want,
    tab closed, the current number, and the sweep of due times."""

    def __init__(self, db: Database, node_id: str, country_code: str) -> None:
        self.db = db
        self.node_id = node_id
        self.country_code = country_code
        self._slots: dict[str, _Slot] = {}
        self._tab_owner: dict[str, tuple[str, str]] = {}  # tab -> (site, visitor), this node
        self._visitor_site: dict[str, str] = {}
        self._discovered_at = float("-inf")
        self._stale_checked_at = float("-inf")
        self.batches = 0
        self.refused = 0
        # Called after each committed batch (Services wakes the sweeper with it: due times may
        # have moved).
        self.committed: Callable[[], None] = _nothing

    # -- the interface the websocket and the hub use ------------------------------------------

    async def hello(self, site: Site, hello: Hello, now: datetime) -> Welcome:
        tab_id = new_id()
        bot = hello.automated or is_crawler(hello.user_agent)

        async def op(conn: AsyncConnection, engine: SiteEngine, writes: BatchWrites) -> Welcome:
            if hello.visitor_id and hello.visitor_id not in engine.visitors:
                await restore_visitors(conn, engine, [hello.visitor_id], now)
            opened = ev.TabOpened(
                hello.visitor_id, tab_id, hello.address, hello.url, hello.referrer, bot
            )
            effects = engine.handle(opened, now)
            writes.add(effects, engine)
            (welcomed,) = [e for e in effects if isinstance(e, ev.Welcomed)]
            visitor_id = welcomed.visitor_id
            if not welcomed.visit_id:  # refused before any row: answered, then forgotten
                self.refused += 1
                shown = self._shown(
                    site, DisplayKind.UNTRACKED, site.defaults[AttributionKind.UNTRACKED]
                )
                return Welcome(visitor_id, "", tab_id, shown, frozenset())
            writes.tabs_new[tab_id] = {
                "id": tab_id,
                "visitor_id": visitor_id,
                "node_id": self.node_id,
                "visible": True,
                "connected_at": now,
                "seen_at": now,
            }
            writes.touched.add(visitor_id)
            ids = self._analytics_ids(site, hello)
            new_visit = writes.visits_new.get(welcomed.visit_id)
            if new_visit is not None:
                new_visit.update(ids)
            elif any(ids.values()):
                writes.visit_ids[welcomed.visit_id] = {k: v for k, v in ids.items() if v}
            return Welcome(
                visitor_id,
                welcomed.visit_id,
                tab_id,
                self._now_shown(engine, visitor_id),
                frozenset(_changed(effects) - {visitor_id}),
            )

        welcome: Welcome = await self._submit(site, op, now)
        if welcome.visit_id:
            self._tab_owner[tab_id] = (site.id, welcome.visitor_id)
            self._visitor_site[welcome.visitor_id] = site.id
        return welcome

    async def activity(
        self, site: Site, visitor_id: str, tab_id: str, now: datetime
    ) -> tuple[Shown, set[str]]:
        return await self._visitor_event(site, ev.Activity(visitor_id, tab_id), now)

    async def want(self, site: Site, visitor_id: str, now: datetime) -> tuple[Shown, set[str]]:
        return await self._visitor_event(site, ev.Want(visitor_id), now)

    async def visibility(self, tab_id: str, visible: bool, now: datetime) -> None:
        owner = self._tab_owner.get(tab_id)
        if owner is None:
            return
        site_id, visitor_id = owner
        slot = self._slots.get(site_id)
        if slot is None:
            return

        async def op(conn: AsyncConnection, engine: SiteEngine, writes: BatchWrites) -> None:
            await self._ensure(conn, engine, visitor_id, now)
            engine.handle(ev.Visibility(visitor_id, tab_id, visible), now)
            writes.tabs_visible[tab_id] = visible

        await self._submit(slot.site, op, now)

    async def tab_closed(self, site: Site, visitor_id: str, tab_id: str, now: datetime) -> set[str]:
        known = self._tab_owner.pop(tab_id, None)

        async def op(conn: AsyncConnection, engine: SiteEngine, writes: BatchWrites) -> set[str]:
            return await self._close_tab(conn, engine, writes, visitor_id, tab_id, now)

        if known is None and tab_id not in self._tab_owner:
            # A refused hello left no rows; nothing to close.
            async with self.db.read() as conn:
                exists = await conn.scalar(sa.select(t.tabs.c.id).where(t.tabs.c.id == tab_id))
            if exists is None:
                return set()
        changed: set[str] = await self._submit(site, op, now)
        return changed

    async def current(self, visitor_id: str, now: datetime) -> Shown | None:
        site_id = self._visitor_site.get(visitor_id)
        if site_id is None:
            async with self.db.read() as conn:
                site_id = await conn.scalar(
                    sa.select(t.visitors.c.site_id).where(t.visitors.c.id == visitor_id)
                )
            if site_id is None:
                return None
        slot = self._slots.get(site_id)
        if slot is not None and slot.engine is not None and not slot.pending:
            async with self.db.read() as conn:
                version = await conn.scalar(
                    sa.select(t.sites.c.state_version).where(t.sites.c.id == site_id)
                )
            engine = slot.engine
            if version == slot.version and visitor_id in engine.visitors:
                return self._now_shown(engine, visitor_id)
        async with self.db.read() as conn:
            site = await get_site(conn, site_id)
        if site is None or site.deleted_at is not None:
            return None

        async def op(conn: AsyncConnection, engine: SiteEngine, writes: BatchWrites) -> Shown:
            await self._ensure(conn, engine, visitor_id, now)
            return self._now_shown(engine, visitor_id)

        shown: Shown = await self._submit(site, op, now)
        return shown

    async def touch_tabs(self, tab_ids: list[str], now: datetime) -> None:
        if not tab_ids:
            return
        async with self.db.write() as conn:
            await conn.execute(t.tabs.update().where(t.tabs.c.id.in_(tab_ids)).values(seen_at=now))

    async def sweep(self, now: datetime) -> set[str]:
        """Apply every due time once; returns the visitors whose display may have changed."""
        clock = time.monotonic()
        if clock - self._discovered_at >= DISCOVER_EVERY_S:
            self._discovered_at = clock
            await self._discover(now)
        stale: dict[str, list[tuple[str, str]]] = {}
        if clock - self._stale_checked_at >= STALE_TABS_EVERY_S:
            self._stale_checked_at = clock
            stale = await self._stale_tabs(now)
        changed: set[str] = set()
        for site_id, slot in list(self._slots.items()):
            due = slot.engine.next_due() if slot.engine is not None else None
            gone = stale.get(site_id, [])
            if not gone and (due is None or due > now):
                continue

            async def op(
                conn: AsyncConnection,
                engine: SiteEngine,
                writes: BatchWrites,
                gone: list[tuple[str, str]] = gone,
            ) -> set[str]:
                result: set[str] = set()
                for visitor_id, tab_id in gone:
                    result |= await self._close_tab(conn, engine, writes, visitor_id, tab_id, now)
                effects = engine.tick(now)
                writes.add(effects, engine)
                return result | _changed(effects)

            try:
                changed |= await self._submit(slot.site, op, now)
            except Exception:
                log.exception("site %s: sweep failed", site_id)
        return changed

    def next_due(self) -> datetime | None:
        """The earliest due time across the sites loaded here (None: nothing is due)."""
        dues = [slot.engine.next_due() for slot in self._slots.values() if slot.engine is not None]
        return min((due for due in dues if due is not None), default=None)

    async def close(self) -> None:
        drains = [slot.drain for slot in self._slots.values() if slot.drain is not None]
        for task in drains:
            task.cancel()
        await asyncio.gather(*drains, return_exceptions=True)

    # -- batches ------------------------------------------------------------------------------

    async def _submit(self, site: Site, op: Op, now: datetime) -> Any:
        slot = self._slots.get(site.id)
        if slot is None:
            slot = self._slots[site.id] = _Slot(site)
        elif site is not slot.site:
            slot.site = site
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        slot.pending.append((op, now, future))
        if slot.drain is None or slot.drain.done():
            slot.drain = asyncio.ensure_future(self._drain(slot))
        return await asyncio.shield(future)

    async def _drain(self, slot: _Slot) -> None:
        while slot.pending:
            batch, slot.pending = slot.pending[:BATCH_MAX], slot.pending[BATCH_MAX:]
            await self._run(slot, batch)

    async def _run(
        self, slot: _Slot, batch: list[tuple[Op, datetime, asyncio.Future[Any]]]
    ) -> None:
        for attempt in range(ATTEMPTS):
            try:
                results = await self._transaction(slot, batch)
            except (StaleState, IntegrityError) as exc:
                slot.engine = None
                log.info(
                    "site %s: state moved (%s); reloading (try %d)", slot.site.id, exc, attempt + 1
                )
                continue
            except Exception as exc:
                slot.engine = None
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            for (_, _, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
            return
        error = StaleState(f"site {slot.site.id}: the state kept moving; giving up this batch")
        for _, _, future in batch:
            if not future.done():
                future.set_exception(error)

    async def _transaction(
        self, slot: _Slot, batch: list[tuple[Op, datetime, asyncio.Future[Any]]]
    ) -> list[Any]:
        first_now = batch[0][1]
        async with self.db.write() as conn:
            version = await site_state.lock_site(conn, slot.site.id)
            if slot.engine is None or version != slot.version:
                fresh = await get_site(conn, slot.site.id)
                if fresh is not None:
                    slot.site = fresh
                slot.engine = await load_engine(conn, slot.site, first_now, new_id)
            engine = slot.engine
            engine.update_rules(rules_of(slot.site))
            if _may_grow(engine, len(batch)):
                await offer_reserve(conn, engine, slot.site, first_now, want=len(batch))
            writes = BatchWrites(slot.site.id, self.node_id)
            results = []
            for op, _now, _ in batch:
                results.append(await op(conn, engine, writes))
            await writes.flush(conn, engine)
            if writes.grown:
                await _check_account_limit(conn, slot.site.account_id)
            if writes:
                await site_state.bump(conn, slot.site.id)
                version += 1
        slot.version = version
        self.batches += 1
        self.committed()
        return results

    # -- helpers ------------------------------------------------------------------------------

    async def _visitor_event(
        self, site: Site, event: ev.Activity | ev.Want, now: datetime
    ) -> tuple[Shown, set[str]]:
        visitor_id = event.visitor_id

        async def op(
            conn: AsyncConnection, engine: SiteEngine, writes: BatchWrites
        ) -> tuple[Shown, set[str]]:
            await self._ensure(conn, engine, visitor_id, now)
            effects = engine.handle(event, now)
            writes.add(effects, engine)
            if visitor_id in engine.visitors:
                writes.touched.add(visitor_id)
            return self._now_shown(engine, visitor_id), _changed(effects) - {visitor_id}

        result: tuple[Shown, set[str]] = await self._submit(site, op, now)
        return result

    async def _close_tab(
        self,
        conn: AsyncConnection,
        engine: SiteEngine,
        writes: BatchWrites,
        visitor_id: str,
        tab_id: str,
        now: datetime,
    ) -> set[str]:
        await self._ensure(conn, engine, visitor_id, now)
        effects = engine.handle(ev.TabClosed(visitor_id, tab_id), now)
        writes.add(effects, engine)
        if writes.tabs_new.pop(tab_id, None) is None:
            writes.tabs_gone.add(tab_id)
        visitor = engine.visitors.get(visitor_id)
        if visitor is not None and not visitor.tabs:
            writes.show(visitor_id, None, "", now)
            writes.touched.add(visitor_id)
        return _changed(effects) - {visitor_id}

    async def _ensure(
        self, conn: AsyncConnection, engine: SiteEngine, visitor_id: str, now: datetime
    ) -> None:
        if visitor_id not in engine.visitors:
            await restore_visitors(conn, engine, [visitor_id], now)

    def _now_shown(self, engine: SiteEngine, visitor_id: str) -> Shown:
        shown = engine.shown(visitor_id)
        site = engine.rules
        if shown is None:
            return self._format(
                site.settings.display_format,
                DisplayKind.UNTRACKED,
                site.defaults[AttributionKind.UNTRACKED],
            )
        return self._format(site.settings.display_format, shown[0], shown[1])

    def _shown(self, site: Site, kind: DisplayKind, e164: str) -> Shown:
        return self._format(site.settings.display_format, kind, e164)

    def _format(self, display_format: str, kind: DisplayKind, e164: str) -> Shown:
        return Shown(kind, e164, format_display(e164, display_format, self.country_code))

    def _analytics_ids(self, site: Site, hello: Hello) -> dict[str, str | None]:
        ga4 = site.settings.analytics.ga4
        return {
            "ga_client_id": ga_client_id(hello.ga),
            "ga_session_id": (
                hello.ga_session
                if hello.ga_session and hello.ga_session.isdigit()
                else ga_session_id(hello.ga_cookies, ga4.measurement_id if ga4 else None)
            ),
            "ym_client_id": ym_client_id(hello.ym),
        }

    async def _discover(self, now: datetime) -> None:
        """Load sites with leases or open tabs this node has not seen (a restart resumes their
        due times)."""
        async with self.db.read() as conn:
            leased = sa.select(t.leases.c.site_id).where(t.leases.c.ended_at.is_(None))
            tabbed = sa.select(t.visitors.c.site_id).join(
                t.tabs, t.tabs.c.visitor_id == t.visitors.c.id
            )
            site_ids = set((await conn.execute(leased.union(tabbed))).scalars())
            missing = site_ids - self._slots.keys()
            sites = [await get_site(conn, site_id) for site_id in sorted(missing)]
        for site in sites:
            if site is not None and site.deleted_at is None:
                self._slots.setdefault(site.id, _Slot(site))
                await self._submit(site, _noop, now)

    async def _stale_tabs(self, now: datetime) -> dict[str, list[tuple[str, str]]]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                sa.select(t.visitors.c.site_id, t.tabs.c.visitor_id, t.tabs.c.id)
                .join(t.visitors, t.visitors.c.id == t.tabs.c.visitor_id)
                .where(t.tabs.c.seen_at < now - timedelta(seconds=TAB_STALE_S))
            )
            stale: dict[str, list[tuple[str, str]]] = {}
            for site_id, visitor_id, tab_id in rows:
                stale.setdefault(site_id, []).append((visitor_id, tab_id))
        return stale


def _may_grow(engine: SiteEngine, batch_size: int) -> bool:
    return (
        engine.pool.leasable_count < engine.settings.pool_max
        and engine.capacity > 0
        and len(engine.reserve) < batch_size
    )


async def _check_account_limit(conn: AsyncConnection, account_id: str) -> None:
    """Growth is decided per site; the account's `max_numbers` spans its sites, so a batch
    that grew re-checks it under the account's row lock (rare: only when a pool grows)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(
            sa.select(t.accounts.c.id).where(t.accounts.c.id == account_id).with_for_update()
        )
    if await account_capacity(conn, account_id) < 0:
        raise StaleState("another site of the account grew meanwhile")


def _nothing() -> None:
    return None


async def _noop(conn: AsyncConnection, engine: SiteEngine, writes: BatchWrites) -> None:
    return None


def _changed(effects: list[ev.Effect]) -> set[str]:
    return {e.visitor_id for e in effects if isinstance(e, ev.Show) and e.visitor_id}

"""The sweeper's chores for the decider (store/deciders.py) besides due times, each on its own
period of the monotonic clock: sites to load, tabs gone stale, idle visitors to forget.

Rules:
- The sweeper looks for sites this node has not loaded (leases or open tabs: after a restart,
  or tabs on other nodes), every DISCOVER_EVERY_S, so their due times resume; with several
  nodes, only those this node decides for (`may_load`: the owner of the site's shard).
- Every STALE_TABS_EVERY_S it lists the tabs whose node stopped confirming them for
  TAB_STALE_S; the sweep closes them.
- Every FORGET_EVERY_S it drops from idle engines the visitors with nothing left in memory and
  the refilled hello buckets: a long-running node holds its live visitors, not every visitor
  and address it ever saw (the store keeps them; a returning visitor is restored from it).
  It runs as a batch so that no batch is half-way through them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core.engine import SiteEngine
from calltracking.store import schema as t
from calltracking.store.db import Database
from calltracking.store.decider_writes import BatchWrites
from calltracking.store.site_batches import SiteBatches, Slot, slot_key
from calltracking.store.sites import get_site

log = logging.getLogger(__name__)
TAB_STALE_S = 180.0  # a tab not confirmed by its node for this long has vanished
DISCOVER_EVERY_S = 10.0
STALE_TABS_EVERY_S = 30.0
FORGET_EVERY_S = 60.0

StaleTabs = dict[str, list[tuple[str, str]]]  # site -> [(visitor, tab)]


async def _always(site_id: str) -> bool:
    return True


class SweepChores:
    def __init__(
        self,
        db: Database,
        batches: SiteBatches,
        may_load: Callable[[str], Awaitable[bool]] = _always,
    ) -> None:
        self.db = db
        self._batches = batches
        self._may_load = may_load
        self._discovered_at = float("-inf")
        self._stale_checked_at = float("-inf")
        self._forgot_at = float("-inf")

    async def run_due(self, now: datetime) -> StaleTabs:
        """Run the chores whose period has passed; the stale tabs found, by site."""
        clock = time.monotonic()
        if clock - self._discovered_at >= DISCOVER_EVERY_S:
            self._discovered_at = clock
            await self._discover(now)
        stale: StaleTabs = {}
        if clock - self._stale_checked_at >= STALE_TABS_EVERY_S:
            self._stale_checked_at = clock
            stale = await self._stale_tabs(now)
        if clock - self._forgot_at >= FORGET_EVERY_S:
            self._forgot_at = clock
            await self._forget(now)
        return stale

    async def _discover(self, now: datetime) -> None:
        """Load sites with leases or open tabs this node has not seen (a restart resumes their
        due times)."""
        slots = self._batches.slots
        async with self.db.read() as conn:
            leased = sa.select(t.leases.c.site_id).where(t.leases.c.ended_at.is_(None))
            tabbed = sa.select(t.visitors.c.site_id).join(
                t.tabs, t.tabs.c.visitor_id == t.visitors.c.id
            )
            site_ids = set((await conn.execute(leased.union(tabbed))).scalars())
            missing = site_ids - slots.keys()  # a split site's slots are its parts'
            sites = [await get_site(conn, site_id) for site_id in sorted(missing)]
        for site in sites:
            if site is None or site.deleted_at is not None:
                continue
            parts: list[int | None] = (
                list(range(site.decision_parts)) if site.decision_parts > 1 else [None]
            )
            for part in parts:
                key = slot_key(site, part)
                if key not in slots and await self._may_load(key):
                    slots.setdefault(key, Slot(site, part))
                    await self._batches.submit(site, _noop, now, part=part)

    async def _forget(self, now: datetime) -> None:
        """Bounded memory: visitors the engine can restore from the store when they come back,
        and hello-rate buckets that refilled, leave memory. Run as a batch so that no batch
        is half-way through them."""

        async def op(conn: AsyncConnection, engine: SiteEngine, writes: BatchWrites) -> None:
            engine.forget_idle(now)
            engine.hello_rate.forget_full(now)

        for slot in list(self._batches.slots.values()):
            if slot.engine is not None:
                try:
                    await self._batches.submit(slot.site, op, now, part=slot.part)
                except Exception:
                    log.exception("site %s: forgetting idle visitors failed", slot.site.id)

    async def _stale_tabs(self, now: datetime) -> StaleTabs:
        async with self.db.read() as conn:
            rows = await conn.execute(
                sa.select(t.visitors.c.site_id, t.tabs.c.visitor_id, t.tabs.c.id)
                .join(t.visitors, t.visitors.c.id == t.tabs.c.visitor_id)
                .where(t.tabs.c.seen_at < now - timedelta(seconds=TAB_STALE_S))
            )
            stale: StaleTabs = {}
            for site_id, visitor_id, tab_id in rows:
                stale.setdefault(site_id, []).append((visitor_id, tab_id))
        return stale


async def _noop(conn: AsyncConnection, engine: SiteEngine, writes: BatchWrites) -> None:
    return None

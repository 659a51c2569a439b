"""The visitor lifecycle served from memory: one `SiteEngine` per site, fed by the websocket
and the sweeper, its effects written in group commits.

Rules:
- Every change goes through the site's group commits (site_batches.py): the caller is answered
  after the commit that holds its effects, so nobody is told a number that is not committed.
- `current()` answers from memory when the site's version is still this node's (one read, no
  lock); otherwise it goes through a batch like any change.
- The sweeper ticks only sites with something due, looks for sites this node has not loaded
  (after a restart, or tabs on other nodes) and closes tabs whose node stopped confirming them.
  Every FORGET_EVERY_S it drops from idle engines the visitors with nothing left in memory and
  the refilled hello buckets: a long-running node holds its live visitors, not every visitor
  and address it ever saw (the store keeps them; a returning visitor is restored from it).
- A number refused by an abuse rule (the hello rate, the per-address cap) is logged with the
  site, the rule and the address, at most once a minute per site and rule, with the count held
  back: an operator sees a bot without the bot writing the log.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core.analytics_ids import ga_client_id, ga_session_id, ym_client_id
from calltracking.core.bots import is_crawler
from calltracking.core.engine import SiteEngine
from calltracking.core.engine import events as ev
from calltracking.core.kinds import AttributionKind, DisplayKind
from calltracking.core.numbers import format_display
from calltracking.core.throttle import LogThrottle
from calltracking.store import schema as t
from calltracking.store.db import Database
from calltracking.store.decider_state import (
    restore_visitors,
)
from calltracking.store.decider_writes import BatchWrites
from calltracking.store.outbox import new_id
from calltracking.store.site_batches import Op, SiteBatches, Slot
from calltracking.store.sites import Site, get_site
from calltracking.store.visitors import Hello, Shown, Welcome

log = logging.getLogger(__name__)
TAB_STALE_S = 180.0  # a tab not confirmed by its node for this long has vanished
DISCOVER_EVERY_S = 10.0
STALE_TABS_EVERY_S = 30.0
FORGET_EVERY_S = 60.0
REFUSAL_LOG_EVERY_S = 60.0


class DeciderService:
    """What the websocket, the hub and the sweeper call: hello, activity, visibility, want,
    tab closed, the current number, and the sweep of due times."""

    def __init__(self, db: Database, node_id: str, country_code: str) -> None:
        self.db = db
        self.node_id = node_id
        self.country_code = country_code
        self._batches = SiteBatches(db, node_id)
        self._tab_owner: dict[str, tuple[str, str]] = {}  # tab -> (site, visitor), this node
        # Visitors with tabs on this node: their site, and how many tabs (forgotten at zero).
        self._visitor_site: dict[str, str] = {}
        self._visitor_tabs: Counter[str] = Counter()
        self._closes_to_retry: list[tuple[Site, str, str, datetime]] = []
        self._discovered_at = float("-inf")
        self._stale_checked_at = float("-inf")
        self._forgot_at = float("-inf")
        self.refused = 0
        self._refusals = LogThrottle(REFUSAL_LOG_EVERY_S)

    @property
    def _slots(self) -> dict[str, Slot]:
        return self._batches.slots

    @property
    def batches(self) -> int:
        return self._batches.batches

    @property
    def committed(self) -> Callable[[], None]:
        """Called after each committed batch (Services wakes the sweeper with it)."""
        return self._batches.committed

    @committed.setter
    def committed(self, callback: Callable[[], None]) -> None:
        self._batches.committed = callback

    def next_due(self) -> datetime | None:
        """The earliest due time across the sites loaded here (None: nothing is due)."""
        return self._batches.next_due()

    async def close(self, grace_s: float = 5.0) -> None:
        """Let queued batches commit (the last tabs' closes among them)."""
        await self._batches.close(grace_s)

    async def _submit(self, site: Site, op: Op, now: datetime, visitor: str | None = None) -> Any:
        return await self._batches.submit(site, op, now, visitor)

    # -- the interface the websocket and the hub use ------------------------------------------

    async def hello(self, site: Site, hello: Hello, now: datetime) -> Welcome:
        tab_id = new_id()
        bot = hello.automated or is_crawler(hello.user_agent)

        async def op(conn: AsyncConnection, engine: SiteEngine, writes: BatchWrites) -> Welcome:
            if hello.visitor_id:
                await self._ensure(conn, engine, writes, hello.visitor_id, now)
            opened = ev.TabOpened(
                hello.visitor_id, tab_id, hello.address, hello.url, hello.referrer, bot
            )
            effects = engine.handle(opened, now)
            writes.add(effects, engine)
            self._log_refusals(site.id, effects)
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

        welcome: Welcome = await self._submit(site, op, now, hello.visitor_id)
        if welcome.visit_id:
            self._tab_owner[tab_id] = (site.id, welcome.visitor_id)
            self._visitor_site[welcome.visitor_id] = site.id
            self._visitor_tabs[welcome.visitor_id] += 1
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
            await self._ensure(conn, engine, writes, visitor_id, now)
            engine.handle(ev.Visibility(visitor_id, tab_id, visible), now)
            writes.tabs_visible[tab_id] = visible

        await self._submit(slot.site, op, now)

    async def tab_closed(self, site: Site, visitor_id: str, tab_id: str, now: datetime) -> set[str]:
        known = self._tab_owner.pop(tab_id, None)
        if known is not None:
            self._visitor_tabs[visitor_id] -= 1
            if self._visitor_tabs[visitor_id] <= 0:
                del self._visitor_tabs[visitor_id]
                self._visitor_site.pop(visitor_id, None)

        if known is None:
            # A refused hello left no rows; nothing to close.
            async with self.db.read() as conn:
                exists = await conn.scalar(sa.select(t.tabs.c.id).where(t.tabs.c.id == tab_id))
            if exists is None:
                return set()
        return await self._close(site, visitor_id, tab_id, now)

    async def _close(self, site: Site, visitor_id: str, tab_id: str, now: datetime) -> set[str]:
        """Close a tab at `now`; when the database is out, the sweeper tries again, so the
        lease still ends (its hold starting when the tab really closed) once it is back."""

        async def op(conn: AsyncConnection, engine: SiteEngine, writes: BatchWrites) -> set[str]:
            return await self._close_tab(conn, engine, writes, visitor_id, tab_id, now)

        try:
            changed: set[str] = await self._submit(site, op, now, visitor_id)
        except Exception:
            self._closes_to_retry.append((site, visitor_id, tab_id, now))
            raise
        return changed

    async def _retry_closes(self) -> set[str]:
        pending, self._closes_to_retry = self._closes_to_retry, []
        changed: set[str] = set()
        for number, (site, visitor_id, tab_id, at) in enumerate(pending):
            try:
                changed |= await self._close(site, visitor_id, tab_id, at)
            except Exception:
                # Still out: the rest wait for the next round, in order (the failed one is
                # queued again by `_close`).
                self._closes_to_retry.extend(pending[number + 1 :])
                break
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
            await self._ensure(conn, engine, writes, visitor_id, now)
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
        retried = await self._retry_closes() if self._closes_to_retry else set()
        clock = time.monotonic()
        if clock - self._discovered_at >= DISCOVER_EVERY_S:
            self._discovered_at = clock
            await self._discover(now)
        stale: dict[str, list[tuple[str, str]]] = {}
        if clock - self._stale_checked_at >= STALE_TABS_EVERY_S:
            self._stale_checked_at = clock
            stale = await self._stale_tabs(now)
        if clock - self._forgot_at >= FORGET_EVERY_S:
            self._forgot_at = clock
            await self._forget(now)
        changed: set[str] = set(retried)
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
                self._log_refusals(engine.rules.site_id, effects)
                return result | _changed(effects)

            try:
                changed |= await self._submit(slot.site, op, now)
            except Exception:
                log.exception("site %s: sweep failed", site_id)
        return changed

    # -- helpers ------------------------------------------------------------------------------

    async def _visitor_event(
        self, site: Site, event: ev.Activity | ev.Want, now: datetime
    ) -> tuple[Shown, set[str]]:
        visitor_id = event.visitor_id

        async def op(
            conn: AsyncConnection, engine: SiteEngine, writes: BatchWrites
        ) -> tuple[Shown, set[str]]:
            await self._ensure(conn, engine, writes, visitor_id, now)
            effects = engine.handle(event, now)
            writes.add(effects, engine)
            self._log_refusals(site.id, effects)
            if visitor_id in engine.visitors:
                writes.touched.add(visitor_id)
            return self._now_shown(engine, visitor_id), _changed(effects) - {visitor_id}

        result: tuple[Shown, set[str]] = await self._submit(site, op, now, visitor_id)
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
        await self._ensure(conn, engine, writes, visitor_id, now)
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
        self,
        conn: AsyncConnection,
        engine: SiteEngine,
        writes: BatchWrites,
        visitor_id: str,
        now: datetime,
    ) -> None:
        """The visitor in the engine, from the store if need be (once per batch: a forged id
        is looked up once, not by every op that names it)."""
        if visitor_id not in engine.visitors and visitor_id not in writes.looked_up:
            writes.looked_up.add(visitor_id)
            await restore_visitors(conn, engine, [visitor_id], now)

    def _log_refusals(self, site_id: str, effects: list[ev.Effect]) -> None:
        for effect in effects:
            if not isinstance(effect, ev.Refused):
                continue
            held = self._refusals.admit(f"{site_id} {effect.rule}", time.monotonic())
            if held is not None:
                log.warning(
                    "site %s: %s refused a number to address %s (%d more refused so since the"
                    " last such line)",
                    site_id,
                    effect.rule,
                    effect.address,
                    held,
                )

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
                self._slots.setdefault(site.id, Slot(site))
                await self._submit(site, _noop, now)

    async def _forget(self, now: datetime) -> None:
        """Bounded memory: visitors the engine can restore from the store when they come back,
        and hello-rate buckets that refilled, leave memory. Run as a batch so that no batch
        is half-way through them."""

        async def op(conn: AsyncConnection, engine: SiteEngine, writes: BatchWrites) -> None:
            engine.forget_idle(now)
            engine.hello_rate.forget_full(now)

        for slot in list(self._slots.values()):
            if slot.engine is not None:
                try:
                    await self._submit(slot.site, op, now)
                except Exception:
                    log.exception("site %s: forgetting idle visitors failed", slot.site.id)

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


async def _noop(conn: AsyncConnection, engine: SiteEngine, writes: BatchWrites) -> None:
    return None


def _changed(effects: list[ev.Effect]) -> set[str]:
    return {e.visitor_id for e in effects if isinstance(e, ev.Show) and e.visitor_id}

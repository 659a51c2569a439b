"""The visitor lifecycle served from memory: one `SiteEngine` per site, fed by the websocket
and the sweeper, its effects written in group commits.

Rules:
- Every change goes through the site's group commits (site_batches.py): the caller is answered
  after the commit that holds its effects, so nobody is told a number that is not committed.
- `current()` answers from memory when the site's version is still this node's (one read, no
  lock); otherwise it goes through a batch like any change.
- The sweeper first retries the tab closes a database outage interrupted (tab_closes.py), runs
  the chores that are due (decider_sweeps.py: sites this node has not loaded, tabs whose node
  stopped confirming them, idle visitors forgotten), then ticks only sites with something due
  or a stale tab to close.
- A number refused by an abuse rule (the hello rate, the per-address cap) is logged with the
  site, the rule and the address, at most once a minute per site and rule, with the count held
  back: an operator sees a bot without the bot writing the log.
- Returning visitors are restored from the store (visitor_identity.py); what a tab is shown is
  formatted in shown_numbers.py.
- With several web nodes (`use_owners`: calltracking/cluster/), a change is decided by the
  node owning the site's shard: this node keeps its own sockets' tabs and forwards the change
  (`_route`), or serves the changes other nodes forward (`serve`). No owner: it claims the
  shard. No answer: it decides itself, a hello looked up by its tab id first, as the owner may
  have stored it. Lost broker: it decides and sweeps what it has, as with no owners.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Literal, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.cluster import messages as fw
from calltracking.core.bots import is_crawler
from calltracking.core.engine import SiteEngine
from calltracking.core.engine import events as ev
from calltracking.core.engine.allocation import has_room, spare_numbers
from calltracking.core.engine.parts import decision_key, part_of, split_key
from calltracking.core.throttle import LogThrottle
from calltracking.store import schema as t
from calltracking.store.db import Database
from calltracking.store.decider_sweeps import SweepChores
from calltracking.store.decider_writes import BatchWrites
from calltracking.store.ids import time_ordered_id
from calltracking.store.shown_numbers import changed_visitors, now_shown, untracked
from calltracking.store.site_batches import SiteBatches, Slot, SplitChanged, slot_key
from calltracking.store.site_cache import SiteCache
from calltracking.store.sites import Site, get_site
from calltracking.store.tab_closes import TabCloses, close_tab
from calltracking.store.visitor_identity import analytics_ids, ensure_visitor
from calltracking.store.visitors import Hello, Shown, Welcome

log = logging.getLogger(__name__)
REFUSAL_LOG_EVERY_S = 60.0
FALLBACK_LOG_EVERY_S = 60.0
# How long the sweeper leaves a split site's part without an owner to the nodes that own no
# part of the site, before it claims the part for its due times itself.
SPARE_PART_GRACE_S = 30.0
T = TypeVar("T")


class Owners(Protocol):
    """Which node decides for a site (cluster/rabbit.py's `RabbitOwners`)."""

    @property
    def connected(self) -> bool: ...

    def owns(self, site_id: str) -> bool: ...

    async def claim(self, site_id: str, *, fresh: bool = False) -> bool: ...

    async def release(self, site_id: str) -> None: ...

    async def forward(self, request: fw.Request) -> fw.Result: ...


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
        self._closes = TabCloses(self._batches)
        self._chores = SweepChores(db, self._batches, self._may_load)
        self.refused = 0
        self._refusals = LogThrottle(REFUSAL_LOG_EVERY_S)
        self._owners: Owners | None = None  # None: this node decides for every site
        self.fallbacks = 0  # changes decided here because the site's owner did not answer
        self._fallbacks_log = LogThrottle(FALLBACK_LOG_EVERY_S)
        self._new_visitors = 0  # spreads a split site's new visitors over the parts
        self._new_in_flight: Counter[str] = Counter()  # new visitors sent to a part, by key
        self._part_orders: dict[tuple[str, int], list[tuple[int, str]]] = {}  # _part_order
        # Sites this node has no slot of (another node owns them, or they are split): read
        # once every TTL_S at most, for the changes that name only a tab or a visitor.
        self._sites = SiteCache(self._read_site)
        self._releasing: set[asyncio.Task[None]] = set()
        self._unowned_seen: dict[str, float] = {}  # split sites' parts the sweeper found

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

    @property
    def outbox_committed(self) -> Callable[[], None]:
        """Called after a committed batch wrote outbox rows unseen by the commit watchers
        (site_batches.py): Services wakes the relay with it."""
        return self._batches.outbox_committed

    @outbox_committed.setter
    def outbox_committed(self, callback: Callable[[], None]) -> None:
        self._batches.outbox_committed = callback

    def next_due(self) -> datetime | None:
        """The earliest due time across the sites loaded here (None: nothing is due)."""
        return self._batches.next_due()

    async def close(self, grace_s: float = 5.0) -> None:
        """Let queued batches commit (the last tabs' closes among them)."""
        await self._batches.close(grace_s)

    # -- the interface the websocket and the hub use ------------------------------------------
    # Each operation keeps this node's own bookkeeping of its sockets' tabs, and has the change
    # decided here or by the site's owner (`_route`).

    async def hello(self, site: Site, hello: Hello, now: datetime) -> Welcome:
        tab_id = time_ordered_id()

        async def routed(site: Site) -> fw.Result:
            part = await self._hello_part(site, hello.visitor_id, now)
            key = slot_key(site, part)
            new_in_part = part is not None and not hello.visitor_id
            if new_in_part:  # not yet decided: counted against the part's spare numbers
                self._new_in_flight[key] += 1
            try:
                return await self._route(
                    key,
                    lambda: fw.HelloRequest(key, now, self.node_id, tab_id, hello),
                    lambda: self._hello(site, hello, tab_id, self.node_id, now, part=part),
                    # The owner may have committed the hello it did not answer: its tab is
                    # then taken as it stands, not opened twice (the same tab id cannot be
                    # inserted again).
                    lambda: self._hello(
                        site, hello, tab_id, self.node_id, now, part=part, maybe_opened=True
                    ),
                )
            finally:
                if new_in_part:
                    self._new_in_flight[key] -= 1
                    if self._new_in_flight[key] <= 0:
                        del self._new_in_flight[key]

        welcome = await self._split_aware(site, routed)
        assert isinstance(welcome, Welcome)
        if welcome.visit_id:
            self._tab_owner[tab_id] = (site.id, welcome.visitor_id)
            self._visitor_site[welcome.visitor_id] = site.id
            self._visitor_tabs[welcome.visitor_id] += 1
        return welcome

    async def activity(
        self, site: Site, visitor_id: str, tab_id: str, now: datetime
    ) -> tuple[Shown, set[str]]:
        return await self._visitor_event(site, visitor_id, "activity", tab_id, now)

    async def want(self, site: Site, visitor_id: str, now: datetime) -> tuple[Shown, set[str]]:
        return await self._visitor_event(site, visitor_id, "want", "", now)

    async def visibility(self, tab_id: str, visible: bool, now: datetime) -> None:
        owner = self._tab_owner.get(tab_id)
        if owner is None:
            return
        site_id, visitor_id = owner

        async def routed(site: Site) -> fw.Result:
            key = _visitor_key(site, visitor_id)
            request = fw.VisibilityRequest(key, now, visitor_id, tab_id, visible)
            return await self._route(key, lambda: request, lambda: self._visibility(request))

        await self._split_aware(await self._site(site_id), routed)

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

        async def routed(site: Site) -> fw.Result:
            key = _visitor_key(site, visitor_id)
            return await self._route(
                key,
                lambda: fw.CloseRequest(key, now, visitor_id, tab_id),
                lambda: self._closes.close(site, visitor_id, tab_id, now),
            )

        changed = await self._split_aware(site, routed)
        assert isinstance(changed, set)
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
        try:
            site = await self._site(site_id)
        except LookupError:
            return None

        async def routed(site: Site) -> fw.Result:
            key = _visitor_key(site, visitor_id)
            request = fw.CurrentRequest(key, now, visitor_id)
            return await self._route(key, lambda: request, lambda: self._current(request))

        shown = await self._split_aware(site, routed)
        assert shown is None or isinstance(shown, Shown)
        return shown

    # -- deciding, here or for another node ------------------------------------------------------

    def use_owners(self, owners: Owners) -> None:
        """Decide only for the sites whose shard this node owns; forward the rest."""
        self._owners = owners

    def _decides(self, key: str) -> bool:
        """Whether this node decides for the site (or the split site's part, by its key) now:
        no owners, or it owns the key's shard, or it lost the broker (then nobody can forward,
        and every node decides what it has under the site's lock, as it would with no owners
        at all, due times included)."""
        owners = self._owners
        return owners is None or not owners.connected or owners.owns(key)

    async def _hello_part(self, site: Site, visitor_id: str | None, now: datetime) -> int | None:
        """The part of a split site that decides a hello (None: the site is not split): a
        returning visitor's own. A new visitor goes to a part this node owns, or can claim,
        so that its sockets' new visitors are decided here, without forwarding; and to one
        with a number free for it before one that would make it wait (`has_room`: the parts
        lend their numbers by taking each other's new visitors)."""
        parts = site.decision_parts
        if parts <= 1:
            return None
        if visitor_id:
            return part_of(visitor_id, parts)
        self._new_visitors += 1
        turn = self._new_visitors
        owners = self._owners
        order = self._part_order(site.id, parts)
        if owners is None or not owners.connected:  # every part is decided here: spread them
            spread = order[turn % parts :] + order[: turn % parts]
            return next((p for p, key in spread if self._has_room(key, now)), spread[0][0])
        owned = [(p, key) for p, key in order if owners.owns(key)]
        owned = owned[turn % len(owned) :] + owned[: turn % len(owned)] if owned else []
        roomy = next((p for p, key in owned if self._has_room(key, now)), None)
        if roomy is not None:
            return roomy
        # This node's parts are full, or it has none: a part nobody owns is claimed and
        # decided here. Full parts are not forwarded to another owner's part on a guess: it
        # may be as full, and its owner would then decide every node's new visitors.
        for part, key in order:
            if (part, key) not in owned and await owners.claim(key):
                return part
        return owned[0][0] if owned else order[turn % parts][0]

    def _part_order(self, site_id: str, parts: int) -> list[tuple[int, str]]:
        """A split site's parts with their keys, this node's own first part first (so that
        nodes start their new visitors in different parts). Kept per site: every new visitor
        asks, and the keys and the node's part cost a hash each."""
        order = self._part_orders.get((site_id, parts))
        if order is None:
            first = part_of(self.node_id, parts)
            order = [
                ((first + i) % parts, decision_key(site_id, (first + i) % parts, parts))
                for i in range(parts)
            ]
            self._part_orders[(site_id, parts)] = order
        return order

    def _has_room(self, key: str, now: datetime) -> bool:
        """Whether this node's copy of the part `key` has a number free for one more new
        visitor, beyond those sent to it and not yet decided (a part not loaded here is taken
        to)."""
        slot = self._slots.get(key)
        if slot is None or slot.engine is None:
            return True
        engine = slot.engine
        return has_room(engine, now) and spare_numbers(engine) > self._new_in_flight[key]

    def _spare_part_for(self, site: Site, serving: int) -> None:
        """A node forwards a new visitor of a split site only when it owns no part of it
        (`_hello_part`): if this node owns several, it gives one up for that node to claim,
        so that after restarts the parts spread over the nodes again."""
        owners = self._owners
        if owners is None:
            return
        parts = site.decision_parts
        spare = [
            p for p in range(parts) if p != serving and owners.owns(decision_key(site.id, p, parts))
        ]
        if spare and owners.owns(decision_key(site.id, serving, parts)):
            task = asyncio.ensure_future(owners.release(decision_key(site.id, spare[-1], parts)))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)

    async def _split_aware(self, site: Site, routed: Callable[[Site], Awaitable[T]]) -> T:
        """`routed(site)`, once more with the site as it now is when its split changed under
        the change (`calltracking split-site`)."""
        try:
            return await routed(site)
        except SplitChanged as exc:
            return await routed(exc.site)

    async def serve(self, request: fw.Request) -> fw.Result:
        """Carry out a request another node forwarded to this one, the owner of the site (or
        of the split site's part) that the request's key names."""
        site_id, part = split_key(request.site_id)
        site = await self._site(site_id)
        if (part is None) != (site.decision_parts <= 1) or (part or 0) >= site.decision_parts:
            # The sender's split is not the site's: it decides itself, and learns the split.
            raise SplitChanged(site)
        match request:
            case fw.HelloRequest():
                if part is not None and not request.hello.visitor_id:
                    self._spare_part_for(site, part)
                return await self._hello(
                    site, request.hello, request.tab_id, request.node_id, request.now, part=part
                )
            case fw.VisitorEventRequest():
                return await self._decide_visitor_event(site, request)
            case fw.VisibilityRequest():
                await self._visibility(request)
                return None
            case fw.CloseRequest():
                return await self._closes.close(
                    site, request.visitor_id, request.tab_id, request.now
                )
            case fw.CurrentRequest():
                return await self._current(request)

    async def _route(
        self,
        key: str,
        request: Callable[[], fw.Request],
        here: Callable[[], Awaitable[T]],
        after_lost_answer: Callable[[], Awaitable[T]] | None = None,
    ) -> T | fw.Result:
        """`here()` when this node decides for the key (a site, or a split site's part), else
        the owner's answer. With no owner, this node claims the key's shard; when the owner
        fails the request, the change is decided here, and when no answer came (the owner may
        have carried it out), `after_lost_answer()` decides it here: the lock keeps either
        correct."""
        owners = self._owners
        if owners is None or self._decides(key):
            return await here()
        retry = after_lost_answer or here
        try:
            return await owners.forward(request())
        except fw.NoOwner:
            if await owners.claim(key, fresh=True):
                return await here()
            try:  # another node claimed it first
                return await owners.forward(request())
            except (fw.NoOwner, fw.ForwardRefused) as exc:
                self._log_fallback(key, exc)
                return await here()
            except fw.ForwardFailed as exc:
                self._log_fallback(key, exc)
        except fw.ForwardRefused as exc:
            self._log_fallback(key, exc)
            return await here()
        except fw.ForwardFailed as exc:
            self._log_fallback(key, exc)
        return await retry()

    async def _hello(
        self,
        site: Site,
        hello: Hello,
        tab_id: str,
        node_id: str,
        now: datetime,
        *,
        part: int | None = None,
        maybe_opened: bool = False,
    ) -> Welcome:
        bot = hello.automated or is_crawler(hello.user_agent)

        async def op(conn: AsyncConnection, engine: SiteEngine, writes: BatchWrites) -> Welcome:
            if maybe_opened:
                opened_for = await conn.scalar(
                    sa.select(t.tabs.c.visitor_id).where(t.tabs.c.id == tab_id)
                )
                if opened_for is not None:
                    await ensure_visitor(conn, engine, writes, opened_for, now)
                    visitor = engine.visitors.get(opened_for)
                    return Welcome(
                        opened_for,
                        (visitor.visit_id if visitor else None) or "",
                        tab_id,
                        now_shown(engine, opened_for, self.country_code),
                        frozenset(),
                    )
            if hello.visitor_id:
                await ensure_visitor(conn, engine, writes, hello.visitor_id, now)
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
                shown = untracked(site, self.country_code)
                return Welcome(visitor_id, "", tab_id, shown, frozenset())
            writes.tabs_new[tab_id] = {
                "id": tab_id,
                "visitor_id": visitor_id,
                "node_id": node_id,  # the node holding the socket confirms the tab
                "visible": True,
                "connected_at": now,
                "seen_at": now,
            }
            writes.touched.add(visitor_id)
            ids = analytics_ids(site, hello)
            new_visit = writes.visits_new.get(welcomed.visit_id)
            if new_visit is not None:
                new_visit.update(ids)
            elif any(ids.values()):
                writes.visit_ids[welcomed.visit_id] = {k: v for k, v in ids.items() if v}
            return Welcome(
                visitor_id,
                welcomed.visit_id,
                tab_id,
                now_shown(engine, visitor_id, self.country_code),
                frozenset(changed_visitors(effects) - {visitor_id}),
            )

        welcome: Welcome = await self._batches.submit(site, op, now, hello.visitor_id, part)
        return welcome

    async def _visibility(self, request: fw.VisibilityRequest) -> None:
        site = await self._site(split_key(request.site_id)[0])
        visitor_id, tab_id, now = request.visitor_id, request.tab_id, request.now

        async def op(conn: AsyncConnection, engine: SiteEngine, writes: BatchWrites) -> None:
            await ensure_visitor(conn, engine, writes, visitor_id, now)
            engine.handle(ev.Visibility(visitor_id, tab_id, request.visible), now)
            writes.tabs_visible[tab_id] = request.visible

        await self._batches.submit(site, op, now, visitor_id)

    async def _current(self, request: fw.CurrentRequest) -> Shown | None:
        key, visitor_id, now = request.site_id, request.visitor_id, request.now
        site_id = split_key(key)[0]
        slot = self._slots.get(key)
        if slot is not None and slot.engine is not None and not slot.pending:
            async with self.db.read() as conn:
                current = await _versions(conn, slot)
            engine = slot.engine
            if current == (slot.site_version, slot.version) and visitor_id in engine.visitors:
                return now_shown(engine, visitor_id, self.country_code)
        async with self.db.read() as conn:
            site = await get_site(conn, site_id)
        if site is None or site.deleted_at is not None:
            return None

        async def op(conn: AsyncConnection, engine: SiteEngine, writes: BatchWrites) -> Shown:
            await ensure_visitor(conn, engine, writes, visitor_id, now)
            return now_shown(engine, visitor_id, self.country_code)

        shown: Shown = await self._batches.submit(site, op, now, visitor_id)
        return shown

    async def _may_load(self, key: str) -> bool:
        """Whether the sweeper loads a site (or a split site's part) it found with leases or
        tabs: with owners, only when this node owns the key's shard or can claim it (nobody
        else holds it)."""
        owners = self._owners
        if owners is None or self._decides(key):
            return True
        site_id, part = split_key(key)
        if part is not None and self._owns_a_part_of(site_id):
            # A spare part: left a while to a node that owns none, which claims it on demand.
            first = self._unowned_seen.setdefault(key, time.monotonic())
            if time.monotonic() - first < SPARE_PART_GRACE_S:
                return False
        # Claimed or held by another node: either way its grace starts afresh when next found.
        self._unowned_seen.pop(key, None)
        return await owners.claim(key)

    def _owns_a_part_of(self, site_id: str) -> bool:
        owners = self._owners
        return owners is not None and any(
            slot.part is not None and slot.site.id == site_id and owners.owns(key)
            for key, slot in self._slots.items()
        )

    async def _site(self, site_id: str) -> Site:
        slot = self._slots.get(site_id)
        if slot is not None:
            return slot.site
        site = await self._sites.by_key(site_id)
        if site is None:
            raise LookupError(f"no site {site_id}")
        return site

    async def _read_site(self, site_id: str) -> Site | None:
        async with self.db.read() as conn:
            site = await get_site(conn, site_id)
        return None if site is None or site.deleted_at is not None else site

    async def touch_tabs(self, tab_ids: list[str], now: datetime) -> None:
        if not tab_ids:
            return
        async with self.db.write() as conn:
            await conn.execute(t.tabs.update().where(t.tabs.c.id.in_(tab_ids)).values(seen_at=now))

    async def sweep(self, now: datetime) -> set[str]:
        """Apply every due time once; returns the visitors whose display may have changed."""
        retried = await self._closes.retry() if self._closes.pending else set()
        stale = await self._chores.run_due(now)
        changed: set[str] = set(retried)
        for key, slot in list(self._slots.items()):
            if not self._decides(key):
                continue  # its owner sweeps it
            due = slot.engine.next_due() if slot.engine is not None else None
            gone = _of_part(stale.get(slot.site.id, []), slot)
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
                    result |= await close_tab(conn, engine, writes, visitor_id, tab_id, now)
                effects = engine.tick(now)
                writes.add(effects, engine)
                self._log_refusals(engine.rules.site_id, effects)
                return result | changed_visitors(effects)

            try:
                changed |= await self._batches.submit(slot.site, op, now, part=slot.part)
            except Exception:
                log.exception("site %s: sweep failed", key)
        return changed

    # -- helpers ------------------------------------------------------------------------------

    async def _visitor_event(
        self,
        site: Site,
        visitor_id: str,
        kind: Literal["activity", "want"],
        tab_id: str,
        now: datetime,
    ) -> tuple[Shown, set[str]]:
        async def routed(site: Site) -> fw.Result:
            key = _visitor_key(site, visitor_id)
            request = fw.VisitorEventRequest(key, now, kind, visitor_id, tab_id)
            return await self._route(
                key, lambda: request, lambda: self._decide_visitor_event(site, request)
            )

        result = await self._split_aware(site, routed)
        assert isinstance(result, tuple)
        return result

    async def _decide_visitor_event(
        self, site: Site, request: fw.VisitorEventRequest
    ) -> tuple[Shown, set[str]]:
        visitor_id = request.visitor_id
        event: ev.Activity | ev.Want = (
            ev.Activity(visitor_id, request.tab_id)
            if request.kind == "activity"
            else ev.Want(visitor_id)
        )

        async def op(
            conn: AsyncConnection, engine: SiteEngine, writes: BatchWrites
        ) -> tuple[Shown, set[str]]:
            await ensure_visitor(conn, engine, writes, visitor_id, request.now)
            effects = engine.handle(event, request.now)
            writes.add(effects, engine)
            self._log_refusals(site.id, effects)
            if visitor_id in engine.visitors:
                writes.touched.add(visitor_id)
            shown = now_shown(engine, visitor_id, self.country_code)
            return shown, changed_visitors(effects) - {visitor_id}

        result: tuple[Shown, set[str]] = await self._batches.submit(
            site, op, request.now, visitor_id
        )
        return result

    def _log_fallback(self, site_id: str, exc: Exception) -> None:
        self.fallbacks += 1
        held = self._fallbacks_log.admit(site_id, time.monotonic())
        if held is not None:
            log.warning(
                "site %s: its owner did not decide (%s); deciding here (%d more so since the"
                " last such line)",
                site_id,
                exc,
                held,
            )

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


def _visitor_key(site: Site, visitor_id: str) -> str:
    """The key that decides a visitor's changes: the site's, or its part's when split."""
    parts = site.decision_parts
    return decision_key(site.id, part_of(visitor_id, parts), parts)


def _of_part(gone: list[tuple[str, str]], slot: Slot) -> list[tuple[str, str]]:
    """The stale tabs (visitor, tab) of a site that belong to this slot's part."""
    if slot.part is None:
        return gone
    parts = slot.site.decision_parts
    return [(visitor, tab) for visitor, tab in gone if part_of(visitor, parts) == slot.part]


async def _versions(conn: AsyncConnection, slot: Slot) -> tuple[int, int]:
    """(the site's version, the slot's own) as stored now; the site's is -1 for an unsplit
    site's slot, which has only the one."""
    site_version = await conn.scalar(
        sa.select(t.sites.c.state_version).where(t.sites.c.id == slot.site.id)
    )
    if slot.part is None:
        return -1, int(site_version or 0)
    p = t.site_parts.c
    part_version = await conn.scalar(
        sa.select(p.state_version).where(p.site_id == slot.site.id, p.part == slot.part)
    )
    return int(site_version or 0), int(part_version or 0)

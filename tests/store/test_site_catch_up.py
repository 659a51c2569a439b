"""Two nodes deciding for one site take turns under its lock. A node whose site another node
wrote since its own last batch loads only what that node changed (recent_changes.py) instead
of the whole site; what it then holds must be what a whole reload would give, whatever the two
nodes did in between, or it would decide from a state the store does not have."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from calltracking.core.engine import SiteEngine, Visitor
from calltracking.core.engine.pool import Number
from calltracking.store import recent_changes
from calltracking.store import schema as t
from calltracking.store.db import Database
from calltracking.store.decider_state import load_engine
from calltracking.store.decider_writes import BatchWrites
from calltracking.store.deciders import DeciderService
from calltracking.store.ids import new_id
from calltracking.store.number_moves import NumberOwner, claim_for
from calltracking.store.sites import Site
from calltracking.store.visitors import Hello
from tests.store.seed import DESKTOP_UA, T0, seed_site


def projection(engine: SiteEngine) -> dict[str, Any]:
    """What a whole reload restores, in a form that compares: the pool's numbers and leases,
    the idlest lease, the leases per address, the visitors with a tab or a lease, the waiters."""
    pool = engine.pool
    idlest = pool.idlest()
    present = {
        v.visitor_id: v for v in engine.visitors.values() if v.tabs or v.visitor_id in pool.leases
    }
    return {
        "numbers": {e164: _number_view(n) for e164, n in pool.numbers.items()},
        "activity_order": [lease.last_activity_at for lease in pool.leases.values()],
        "idlest": idlest.e164 if idlest else None,
        "per_address": dict(pool.per_address),
        "visitors": {vid: _visitor_view(v) for vid, v in present.items()},
        "waiting": [vid for vid in engine._waiting if vid in present],
    }


def _number_view(n: Number) -> tuple[Any, ...]:
    le = n.lease
    held: tuple[Any, ...] | None = None
    if le is not None:
        held = (le.lease_id, le.visitor_id, le.visit_id, le.address, le.assigned_at)
        held += (le.last_activity_at,)
    return (n.static, held, n.last_visitor_id, n.released_at)


def _visitor_view(v: Visitor) -> tuple[Any, ...]:
    source = v.visit_source
    visit: tuple[Any, ...] = (v.visit_id, v.visit_started_at, v.visit_tracked)
    visit += ((source.source, source.medium, source.campaign) if source else None,)
    state = (v.last_activity_at, v.revoked_at, v.waiting_since, v.wants, v.bot, v.shown)
    return (sorted(v.tabs.items()), *visit, *state)


class Tab:
    def __init__(self, node: int, visitor: str, tab: str) -> None:
        self.node, self.visitor, self.tab = node, visitor, tab


async def _noop(conn: Any, engine: SiteEngine, writes: BatchWrites) -> None:
    return None


class TwoNodes:
    def __init__(self, db: Database, site: Site, rng: random.Random) -> None:
        self.db, self.site, self.rng = db, site, rng
        self.nodes = [DeciderService(db, f"node-{i}", "7") for i in range(2)]
        self.tabs: list[Tab] = []
        self.visitors: list[str] = []
        self.now = T0

    async def step(self) -> None:
        node = self.rng.randrange(2)
        service = self.nodes[node]
        roll = self.rng.random()
        self.now += timedelta(seconds=self.rng.choice((0, 1, 5, 20)))
        if roll < 0.3 or not self.tabs:
            address = f"10.0.0.{self.rng.randrange(3)}"
            returning = self.rng.choice(self.visitors) if self.visitors and roll < 0.15 else None
            hello = Hello(
                url="https://shop.example/?utm_source=ads",
                referrer="",
                visitor_id=returning,
                user_agent=DESKTOP_UA,
                address=address,
            )
            welcome = await service.hello(self.site, hello, self.now)
            if welcome.visit_id:
                self.tabs.append(Tab(node, welcome.visitor_id, welcome.tab_id))
                if welcome.visitor_id not in self.visitors:
                    self.visitors.append(welcome.visitor_id)
            return
        tab = self.rng.choice(self.tabs)
        service = self.nodes[tab.node]
        if roll < 0.5:
            self.tabs.remove(tab)
            await service.tab_closed(self.site, tab.visitor, tab.tab, self.now)
        elif roll < 0.7:
            await service.activity(self.site, tab.visitor, tab.tab, self.now)
        elif roll < 0.8:
            await service.visibility(tab.tab, self.rng.random() < 0.5, self.now)
        elif roll < 0.85:
            await service.want(self.site, tab.visitor, self.now)
        else:
            self.now += timedelta(seconds=self.rng.choice((30, 61, 200)))
            await service.sweep(self.now)

    async def check(self) -> None:
        """Each node that holds the site syncs (an empty batch: the lock, and a catch-up if
        the other node wrote) and must then hold what a whole reload gives."""
        for service in self.nodes:
            slot = service._batches.slots.get(self.site.id)
            if slot is None or slot.engine is None:
                continue
            await service._batches.submit(self.site, _noop, self.now)
            assert slot.engine is not None
            async with self.db.read() as conn:
                fresh = await load_engine(conn, slot.site, self.now, new_id)
            assert projection(slot.engine) == projection(fresh)


async def _play(db: Database, seed: int, steps: int) -> TwoNodes:
    site = await seed_site(
        db,
        reserve=8,
        pool_max=5,
        show_delay_s=5,
        idle_timeout_s=60,
        hold_s=30,
        preempt_idle_s=45,
        max_leases_per_address=2,
    )
    nodes = TwoNodes(db, site, random.Random(seed))
    for _ in range(steps):
        await nodes.step()
        await nodes.check()
    return nodes


@pytest.mark.parametrize("seed", [1, 2])
async def test_a_node_that_catches_up_holds_what_a_whole_reload_gives(
    sqlite_db: Database, seed: int
) -> None:
    nodes = await _play(sqlite_db, seed, steps=80)
    batches = [service._batches for service in nodes.nodes]
    # Each node loaded the site once and caught up on the other's changes from then on.
    assert [b.reloads for b in batches] == [1, 1]
    assert all(b.catch_ups > 10 for b in batches), [b.catch_ups for b in batches]


@pytest.mark.postgres
async def test_catching_up_on_postgresql_holds_what_a_whole_reload_gives(pg_db: Database) -> None:
    nodes = await _play(pg_db, seed=7, steps=60)
    assert [service._batches.reloads for service in nodes.nodes] == [1, 1]


async def test_an_operator_change_between_batches_means_a_whole_reload(
    sqlite_db: Database,
) -> None:
    """An operator's change bumps the version without an entry: the gap forces a reload."""
    nodes = await _play(sqlite_db, seed=5, steps=20)
    async with sqlite_db.write() as conn:
        owner = NumberOwner(nodes.site.id, nodes.site.account_id)
        await claim_for(conn, "+74951119999", owner, "static", "shop", "static", nodes.now)
    await nodes.check()
    assert [service._batches.reloads for service in nodes.nodes] == [2, 2]
    async with sqlite_db.read() as conn:
        numbers = await conn.scalars(
            sa.select(t.numbers.c.e164).where(t.numbers.c.site_id == nodes.site.id)
        )
        assert "+74951119999" in set(numbers)


def test_only_an_unbroken_run_of_versions_is_caught_up_on() -> None:
    changes = [recent_changes.Change(v, frozenset(), frozenset()) for v in (3, 4, 6)]
    assert [c.version for c in recent_changes.between(changes, 2, 4) or []] == [3, 4]
    assert recent_changes.between(changes, 4, 6) is None  # 5 is missing: an operator's bump
    assert recent_changes.between(changes, 1, 4) is None  # 2 is older than the list
    assert recent_changes.between(changes, -1, 3) is None  # never loaded


def test_an_unreadable_list_means_no_entries() -> None:
    assert recent_changes.decode("not json") == []
    assert recent_changes.decode('[[1, "x"]]') == []
    entries = recent_changes.decode(
        recent_changes.encode([recent_changes.Change(9, frozenset({"+7"}), frozenset({"v"}))])
    )
    assert entries == [recent_changes.Change(9, frozenset({"+7"}), frozenset({"v"}))]


def test_a_batch_too_large_to_list_leaves_a_gap() -> None:
    """A storm's batch of hundreds of visitors is not written out: whoever missed it reloads."""
    small = recent_changes.Change(1, frozenset({"+71"}), frozenset({"a"}))
    huge = recent_changes.Change(
        2, frozenset(), frozenset(f"v{i}" for i in range(recent_changes.MAX_IDS))
    )
    latest = recent_changes.Change(3, frozenset({"+72"}), frozenset({"b"}))
    stored = recent_changes.decode(recent_changes.encode([small, huge, latest]))
    assert stored == [latest]
    assert recent_changes.between(stored, 2, 3) == [latest]
    assert recent_changes.between(stored, 1, 3) is None

"""A split site (`calltracking split-site`, core/engine/parts.py): each part is decided like a
site of its own. Played at random by two nodes that may decide any part, each part a node
holds must be what a whole reload of that part gives, every lease must stay in its visitor's
part, and a number is never leased twice, whatever the nodes did in between; splitting a live
site keeps every lease."""

from __future__ import annotations

import dataclasses
import random
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from calltracking.core.engine.parts import number_part, part_of, part_settings
from calltracking.core.errors import InvalidInput
from calltracking.core.kinds import DisplayKind
from calltracking.store import schema as t
from calltracking.store.db import Database
from calltracking.store.decider_state import load_engine
from calltracking.store.deciders import DeciderService
from calltracking.store.ids import new_id
from calltracking.store.queries import site_changes
from calltracking.store.site_split import split_site
from calltracking.store.sites import Site, add_to_reserve, get_site
from calltracking.store.visitors import Hello
from tests.store.seed import DESKTOP_UA, T0, seed_site
from tests.store.test_site_catch_up import TwoNodes, _noop, _number_view, projection


async def _fresh(db: Database, site_id: str) -> Site:
    async with db.read() as conn:
        site = await get_site(conn, site_id)
    assert site is not None
    return site


async def _active_leases(db: Database, site_id: str) -> list[Any]:
    le = t.leases.c
    async with db.read() as conn:
        rows = await conn.execute(
            sa.select(le.id, le.number, le.visitor_id).where(
                le.site_id == site_id, le.ended_at.is_(None)
            )
        )
        return list(rows)


async def _pool_size(db: Database, site_id: str) -> int:
    async with db.read() as conn:
        pool = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(t.numbers)
            .where(t.numbers.c.site_id == site_id, t.numbers.c.role == "pool")
        )
    return int(pool or 0)


class SplitNodes(TwoNodes):
    async def check(self) -> None:
        """Each part a node holds syncs (an empty batch of that part) and must then hold what
        a whole reload of the part gives; every lease is in its visitor's part."""
        parts = self.site.decision_parts
        for service in self.nodes:
            for slot in list(service._batches.slots.values()):
                if slot.engine is None:
                    continue
                assert slot.part is not None, "a split site's changes go to its parts"
                await service._batches.submit(self.site, _noop, self.now, part=slot.part)
                assert slot.engine is not None
                async with self.db.read() as conn:
                    fresh = await load_engine(conn, slot.site, self.now, new_id, part=slot.part)
                assert projection(slot.engine) == projection(fresh)
                assert all(part_of(visitor, parts) == slot.part for visitor in slot.engine.visitors)
        leases = await _active_leases(self.db, self.site.id)
        assert len({lease.number for lease in leases}) == len(leases)
        assert len({lease.visitor_id for lease in leases}) == len(leases)


async def _split_site(db: Database, parts: int, **settings: Any) -> Site:
    rules: dict[str, Any] = {
        "pool_max": 8,
        "show_delay_s": 5,
        "idle_timeout_s": 60,
        "hold_s": 30,
        "preempt_idle_s": 45,
        "max_leases_per_address": 2,
    }
    site = await seed_site(db, reserve=12, **(rules | settings))
    await split_site(db, site.id, parts)
    return await _fresh(db, site.id)


@pytest.mark.parametrize(("seed", "parts"), [(1, 2), (2, 3)])
async def test_each_part_holds_what_a_whole_reload_of_it_gives(
    sqlite_db: Database, seed: int, parts: int
) -> None:
    site = await _split_site(sqlite_db, parts)
    nodes = SplitNodes(sqlite_db, site, random.Random(seed))
    for _ in range(120):
        await nodes.step()
        await nodes.check()
    # Both nodes decided parts of the site, and new visitors went to every part.
    assert all(service._batches.slots for service in nodes.nodes)
    assert {part_of(visitor, parts) for visitor in nodes.visitors} == set(range(parts))


async def test_the_parts_load_the_sites_numbers_each_in_its_own_part_and_no_other(
    sqlite_db: Database,
) -> None:
    # Played whole, then split: numbers now held by a visitor of one part and last held by a
    # visitor of another, as only a change of the split leaves them.
    site = await seed_site(sqlite_db, reserve=12, pool_max=8, hold_s=30, idle_timeout_s=60)
    nodes = TwoNodes(sqlite_db, site, random.Random(5))
    for _ in range(80):
        await nodes.step()
    await split_site(sqlite_db, site.id, 3)
    site = await _fresh(sqlite_db, site.id)
    async with sqlite_db.read() as conn:
        whole = await load_engine(conn, site, nodes.now, new_id)
        loaded = [await load_engine(conn, site, nodes.now, new_id, part=p) for p in range(3)]
    numbers = whole.pool.numbers.values()
    assert any(
        n.lease and part_of(n.lease.visitor_id, 3) != part_of(n.last_visitor_id or n.e164, 3)
        for n in numbers
    )
    assert any(n.lease is None and n.last_visitor_id for n in numbers)
    for part, engine in enumerate(loaded):
        assert engine.pool.numbers.keys() == {
            e164 for e164, n in whole.pool.numbers.items() if number_part(n, 3) == part
        }
        for e164, number in engine.pool.numbers.items():
            assert _number_view(number) == _number_view(whole.pool.numbers[e164])


@pytest.mark.postgres
async def test_parts_on_postgresql_hold_what_a_whole_reload_gives(pg_db: Database) -> None:
    site = await _split_site(pg_db, 2)
    nodes = SplitNodes(pg_db, site, random.Random(7))
    for _ in range(80):
        await nodes.step()
        await nodes.check()
    assert {part_of(visitor, 2) for visitor in nodes.visitors} == {0, 1}


async def test_a_new_visitor_gets_an_id_in_the_part_that_decided_it(sqlite_db: Database) -> None:
    site = await _split_site(sqlite_db, 2, show_delay_s=0)
    service = DeciderService(sqlite_db, "node-a", "7")
    welcomes = [
        await service.hello(
            site,
            Hello(
                url="https://shop.example/",
                referrer="",
                user_agent=DESKTOP_UA,
                address=f"10.1.0.{i}",
            ),
            T0,
        )
        for i in range(6)
    ]
    by_part: dict[int, set[str]] = {}
    for welcome in welcomes:
        by_part.setdefault(part_of(welcome.visitor_id, 2), set()).add(welcome.visitor_id)
    assert set(by_part) == {0, 1}  # one node deciding every part spreads its new visitors
    for key, slot in service._batches.slots.items():
        assert slot.engine is not None
        assert set(slot.engine.visitors) == by_part[slot.part or 0], key
        assert set(slot.engine.pool.leases) == by_part[slot.part or 0]


async def test_the_parts_share_the_site_pool_bounds(sqlite_db: Database) -> None:
    # pool_max 8: parts of 3, 3 and 2, which new visitors from distinct addresses fill.
    site = await _split_site(sqlite_db, 3, show_delay_s=0, max_leases_per_address=None)
    service = DeciderService(sqlite_db, "node-a", "7")
    for i in range(20):
        hello = Hello(
            url="https://shop.example/", referrer="", user_agent=DESKTOP_UA, address=f"10.2.0.{i}"
        )
        await service.hello(site, hello, T0 + timedelta(seconds=i))
    assert await _pool_size(sqlite_db, site.id) == 8
    assert len(await _active_leases(sqlite_db, site.id)) == 8


async def test_an_operators_change_of_a_split_sites_settings_reaches_each_parts_share(
    sqlite_db: Database,
) -> None:
    site = await _split_site(sqlite_db, 2, show_delay_s=0, max_leases_per_address=None)
    service = DeciderService(sqlite_db, "node-a", "7")

    async def hellos(first: int, at: datetime) -> None:
        for i in range(first, first + 6):
            hello = Hello(
                url="https://shop.example/",
                referrer="",
                user_agent=DESKTOP_UA,
                address=f"10.4.0.{i}",
            )
            await service.hello(site, hello, at)

    await hellos(0, T0)
    changed = dataclasses.replace(site.settings, hold_s=90, idle_timeout_s=120)
    async with sqlite_db.write() as conn:
        await site_changes.update_site(
            conn, site, name=None, domains=None, defaults=None, settings=changed, now=T0
        )
    await hellos(6, T0 + timedelta(seconds=1))
    slots = [slot for slot in service._batches.slots.values() if slot.engine is not None]
    assert {slot.part for slot in slots} == {0, 1}
    for slot in slots:
        assert slot.engine is not None and slot.part is not None
        assert slot.engine.rules.settings == part_settings(changed, slot.part, 2)


async def test_splitting_a_live_site_keeps_every_lease_and_number_shown(
    sqlite_db: Database,
) -> None:
    site = await seed_site(sqlite_db, reserve=12, pool_max=8)
    before = DeciderService(sqlite_db, "node-a", "7")
    shown = {}
    for i in range(6):
        hello = Hello(
            url="https://shop.example/", referrer="", user_agent=DESKTOP_UA, address=f"10.3.0.{i}"
        )
        welcome = await before.hello(site, hello, T0)
        shown[welcome.visitor_id] = welcome.shown
    leases = {lease.id for lease in await _active_leases(sqlite_db, site.id)}
    assert len(leases) == 6

    assert await split_site(sqlite_db, site.id, 3) == 1
    # The node still holds the unsplit engine and the old Site: its next change learns the
    # split and goes to the visitor's part.
    later = T0 + timedelta(seconds=5)
    for visitor_id, was in shown.items():
        now_shown, _ = await before.activity(site, visitor_id, "", later)
        assert now_shown == was
    split = await _fresh(sqlite_db, site.id)
    assert split.decision_parts == 3
    assert {lease.id for lease in await _active_leases(sqlite_db, site.id)} == leases
    assert {slot.part for slot in before._batches.slots.values()} <= {0, 1, 2}
    # Another node that knows the split from the start sees the same numbers.
    other = DeciderService(sqlite_db, "node-b", "7")
    for visitor_id, was in shown.items():
        assert await other.current(visitor_id, later) == was


async def test_a_split_is_one_to_sixteen_parts_of_a_site_that_exists(sqlite_db: Database) -> None:
    site = await seed_site(sqlite_db)
    for parts in (0, 17, -1):
        with pytest.raises(InvalidInput):
            await split_site(sqlite_db, site.id, parts)
    with pytest.raises(LookupError):
        await split_site(sqlite_db, "no-such-site", 2)
    assert (await _fresh(sqlite_db, site.id)).decision_parts == 1


async def test_a_part_finds_its_reserve_numbers_behind_the_other_parts(
    sqlite_db: Database,
) -> None:
    site = await seed_site(sqlite_db, reserve=0)
    await split_site(sqlite_db, site.id, 2)
    site = await _fresh(sqlite_db, site.id)
    others = [e for e in (f"+7495222{i:04d}" for i in range(200)) if part_of(e, 2) == 0][:60]
    own = [e for e in (f"+7495333{i:04d}" for i in range(200)) if part_of(e, 2) == 1][:3]
    async with sqlite_db.write() as conn:
        await add_to_reserve(conn, others + own, T0)
    async with sqlite_db.read() as conn:
        engine = await load_engine(conn, site, T0, new_id, part=1)
    assert engine.reserve[: len(own)] == own  # its own first, then the others


async def test_new_visitors_go_to_a_part_with_a_free_number_before_a_full_one(
    sqlite_db: Database,
) -> None:
    """pool_max 3 in two parts (2 and 1): spread in turn, the third new visitor would find its
    part full while the other has a number free; it is sent there and gets it."""
    site = await _split_site(sqlite_db, 2, pool_max=3, show_delay_s=0)
    service = DeciderService(sqlite_db, "node-a", "7")
    shown = []
    for i in range(3):
        hello = Hello(
            url="https://shop.example/",
            referrer="",
            user_agent=DESKTOP_UA,
            address=f"10.4.0.{i}",
        )
        shown.append((await service.hello(site, hello, T0)).shown)
    assert [s.kind for s in shown] == [DisplayKind.DYNAMIC] * 3
    assert len({s.e164 for s in shown}) == 3


async def test_parts_growing_at_once_keep_to_the_accounts_limit(sqlite_db: Database) -> None:
    """Each part counts the account's room without its lock and keeps that count between
    batches; the count under the lock after growing still stops the account's limit from
    being passed when two nodes grow two parts at once."""
    await _two_nodes_grow_two_parts(sqlite_db)


@pytest.mark.postgres
async def test_parts_growing_at_once_on_postgresql_keep_to_the_accounts_limit(
    pg_db: Database,
) -> None:
    await _two_nodes_grow_two_parts(pg_db)


async def _two_nodes_grow_two_parts(db: Database) -> None:
    site = await seed_site(db, reserve=10, max_numbers=6, pool_max=10)  # 3 defaults + 3
    await split_site(db, site.id, 2)
    site = await _fresh(db, site.id)
    nodes = [DeciderService(db, f"node-{i}", "7") for i in range(2)]

    async def hello(node: DeciderService, n: int) -> DisplayKind:
        h = Hello(
            url="https://shop.example/", referrer="", user_agent=DESKTOP_UA, address=f"10.5.0.{n}"
        )
        return (await node.hello(site, h, T0)).shown.kind

    # One at a time, so that each part's engine keeps a count another has since spent.
    kinds = [await hello(nodes[n % 2], n) for n in range(12)]

    assert await _pool_size(db, site.id) == 3
    assert kinds.count(DisplayKind.DYNAMIC) == 3
    assert len(await _active_leases(db, site.id)) == 3


def test_each_node_starts_its_new_visitors_in_its_own_part(sqlite_db: Database) -> None:
    # Nodes whose ids fall in different parts try different parts first, so that after a
    # restart they claim different parts instead of all asking for the first one.
    nodes: dict[int, DeciderService] = {}
    for i in range(40):
        node = DeciderService(sqlite_db, f"node-{i}", "7")
        nodes.setdefault(part_of(node.node_id, 4), node)
        if len(nodes) == 4:
            break
    assert len(nodes) == 4
    for first, node in nodes.items():
        order = node._part_order("site-1", 4)
        assert [part for part, _ in order] == [(first + i) % 4 for i in range(4)]
        assert [key for _, key in order] == [f"site-1#{part}" for part, _ in order]
        assert node._part_order("site-1", 4) is order  # kept, not rebuilt per visitor
        assert node._part_order("site-1", 2)[0][0] == part_of(node.node_id, 2)

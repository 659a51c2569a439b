"""A split site on two web nodes (`calltracking split-site`): each node owns a part and
decides its own sockets' new visitors there, without forwarding them; a returning visitor's
changes go to the owner of the visitor's part; when that owner goes away another node claims
the part and the visitor keeps its number. Real RabbitMQ and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from calltracking.core.engine.parts import decision_key, part_of
from calltracking.core.kinds import DisplayKind
from calltracking.store import deciders
from calltracking.store.db import Database
from calltracking.store.site_split import split_site
from calltracking.store.sites import Site, get_site, top_up_pool
from calltracking.store.visitors import Hello
from tests.cluster.test_forwarding import Node, active_leases, cluster, start_node
from tests.integration.pbx import until
from tests.store.seed import DESKTOP_UA, T0, seed_site

pytestmark = pytest.mark.rabbitmq
__all__ = ["cluster"]  # the fixture, shared with the unsplit site's tests


async def _split(db: Database, parts: int) -> Site:
    site = await seed_site(db, reserve=60, max_numbers=100, pool_max=60)
    await split_site(db, site.id, parts)
    async with db.read() as conn:
        split = await get_site(conn, site.id)
    assert split is not None
    return split


def _returning(visitor_id: str) -> Hello:
    return Hello(
        url="https://shop.example/again",
        referrer="",
        visitor_id=visitor_id,
        user_agent=DESKTOP_UA,
        address="10.1.0.1",
    )


def _owned_parts(node: Node, site: Site) -> set[int]:
    parts = site.decision_parts
    return {p for p in range(parts) if node.owners.owns(decision_key(site.id, p, parts))}


async def test_each_node_decides_its_own_new_visitors_in_a_part_it_owns(
    cluster: tuple[Node, Node, str], pg_db: Database
) -> None:
    a, b, _ = cluster
    site = await _split(pg_db, 2)

    from_a = await asyncio.gather(*(a.hello(site, n) for n in range(20)))
    from_b = await asyncio.gather(*(b.hello(site, n) for n in range(20, 40)))

    assert _owned_parts(a, site) and _owned_parts(b, site)
    assert _owned_parts(a, site) | _owned_parts(b, site) == {0, 1}
    assert not _owned_parts(a, site) & _owned_parts(b, site)
    assert a.owners.counts["forwarded"] == 0 and b.owners.counts["forwarded"] == 0
    for node, welcomes in ((a, from_a), (b, from_b)):
        assert {part_of(w.visitor_id, 2) for w in welcomes} == _owned_parts(node, site)
    numbers = [w.shown.e164 for w in (*from_a, *from_b)]
    assert all(w.shown.kind is DisplayKind.DYNAMIC for w in (*from_a, *from_b))
    assert len(set(numbers)) == 40  # nobody was told a number another visitor holds
    assert sorted(await active_leases(pg_db, site.id)) == sorted(numbers)


async def test_a_returning_visitor_is_decided_by_the_owner_of_its_part(
    cluster: tuple[Node, Node, str], pg_db: Database
) -> None:
    a, b, _ = cluster
    site = await _split(pg_db, 2)
    first = await b.hello(site, 0)
    await a.hello(site, 1)  # a owns the other part
    returning = _returning(first.visitor_id)

    again = await a.service.hello(site, returning, T0)

    assert again.visitor_id == first.visitor_id and again.shown == first.shown
    assert a.owners.counts["forwarded"] == 1 and b.owners.counts["served"] == 1
    shown, _ = await a.service.activity(site, again.visitor_id, again.tab_id, T0)
    assert shown == first.shown and a.owners.counts["forwarded"] == 2


async def test_when_a_parts_owner_goes_away_another_node_claims_it_and_keeps_its_leases(
    cluster: tuple[Node, Node, str], pg_db: Database
) -> None:
    a, b, _ = cluster
    site = await _split(pg_db, 2)
    await a.hello(site, 0)
    first = await b.hello(site, 1)
    await b.owners.close()  # the broker frees b's part with its connection
    returning = _returning(first.visitor_id)

    again = await a.service.hello(site, returning, T0)
    fresh = await a.hello(site, 2)

    assert _owned_parts(a, site) == {0, 1}
    assert again.shown == first.shown
    assert fresh.shown.kind is DisplayKind.DYNAMIC
    assert len(set(await active_leases(pg_db, site.id))) == 3


async def test_a_node_that_owns_several_parts_gives_one_to_a_node_that_owns_none(
    cluster: tuple[Node, Node, str], pg_db: Database, pg_url: str, amqp_url: str
) -> None:
    """After a restart one node may hold every part: the first new visitor another node
    forwards to it makes it give one part up, which that node then claims and decides."""
    a, b, prefix = cluster
    site = await _split(pg_db, 2)
    await b.owners.close()
    await a.hello(site, 0)
    for part in range(2):
        assert await a.owners.claim(decision_key(site.id, part, 2))
    async with contextlib.AsyncExitStack() as stack:
        db = Database(pg_url)
        stack.push_async_callback(db.close)
        c = await start_node(stack, db, amqp_url, "node-c", prefix, timeout_s=3.0)
        first = await c.hello(site, 1)  # c owns nothing: forwarded, and a gives a part up
        assert c.owners.counts["forwarded"] == 1
        await until(lambda: a.owners.counts["released"] == 1)
        assert len(_owned_parts(a, site)) == 1

        async def claimed() -> bool:
            await c.hello(site, 100 + c.owners.counts["claimed"] + c.owners.counts["forwarded"])
            return bool(_owned_parts(c, site))

        for _ in range(50):  # a refused claim is not asked for again for 2 s
            if await claimed():
                break
            await asyncio.sleep(0.1)
        assert _owned_parts(c, site) == {0, 1} - _owned_parts(a, site)
        later = await c.hello(site, 99)
        assert part_of(later.visitor_id, 2) in _owned_parts(c, site)
        numbers = await active_leases(pg_db, site.id)
        assert len(set(numbers)) == len(numbers) and first.shown.e164 in numbers


async def test_the_sweeper_leaves_a_spare_part_to_other_nodes_for_a_while(
    cluster: tuple[Node, Node, str], pg_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Leases of a part nobody owns need a node for their due times, but a node that owns
    another part of the site leaves it for SPARE_PART_GRACE_S to nodes that own none."""
    a, b, _ = cluster
    site = await _split(pg_db, 2)
    await a.hello(site, 0)
    await b.hello(site, 1)
    (spare,) = _owned_parts(b, site)
    await b.owners.close()

    a.service._chores._discovered_at = float("-inf")
    await a.service.sweep(T0)
    assert spare not in _owned_parts(a, site)

    monkeypatch.setattr(deciders, "SPARE_PART_GRACE_S", 0.0)
    a.service._chores._discovered_at = float("-inf")
    await a.service.sweep(T0)
    assert _owned_parts(a, site) == {0, 1}
    assert decision_key(site.id, spare, 2) in a.service._batches.slots


async def test_a_node_whose_part_is_full_claims_a_part_nobody_owns_for_its_new_visitors(
    cluster: tuple[Node, Node, str], pg_db: Database
) -> None:
    a, _, _ = cluster
    site = await seed_site(pg_db, reserve=4, max_numbers=20, pool_max=4)
    await split_site(pg_db, site.id, 2)
    async with pg_db.read() as conn:
        split = await get_site(conn, site.id)
    assert split is not None

    welcomes = [await a.hello(split, n) for n in range(4)]

    assert all(w.shown.kind is DisplayKind.DYNAMIC for w in welcomes)
    assert len({w.shown.e164 for w in welcomes}) == 4
    assert _owned_parts(a, split) == {0, 1}
    assert {part_of(w.visitor_id, 2) for w in welcomes} == {0, 1}


async def test_new_visitors_in_flight_count_against_a_parts_spare_numbers(
    cluster: tuple[Node, Node, str], pg_db: Database
) -> None:
    """A part with two numbers left is sent two of five new visitors arriving at once, not
    all five: those not yet decided count against its spare numbers, and the others go to a
    part this node claims."""
    a, _, _ = cluster
    site = await seed_site(pg_db, reserve=6, max_numbers=20, pool_max=6, pool_min=6)
    async with pg_db.write() as conn:
        assert len(await top_up_pool(conn, site, T0)) == 6  # three numbers in each part
    await split_site(pg_db, site.id, 2)
    async with pg_db.read() as conn:
        split = await get_site(conn, site.id)
    assert split is not None
    first = await a.hello(split, 0)
    assert len(_owned_parts(a, split)) == 1

    welcomes = await asyncio.gather(*(a.hello(split, n) for n in range(1, 6)))

    shown = [w.shown for w in (first, *welcomes)]
    assert all(s.kind is DisplayKind.DYNAMIC for s in shown)
    assert len({s.e164 for s in shown}) == 6
    assert _owned_parts(a, split) == {0, 1}

"""Two web nodes on one site: the node that owns the site's shard decides, the other forwards
its sockets' changes to it, against the machine's real RabbitMQ and PostgreSQL. Ownership only
routes: whatever happens to the owner, no number is leased twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aio_pika
import pytest
import sqlalchemy as sa

from calltracking.cluster import messages as fw
from calltracking.cluster.rabbit import RabbitOwners, Serve
from calltracking.cluster.shards import shard_of
from calltracking.core.kinds import DisplayKind
from calltracking.store import schema as t
from calltracking.store.db import Database
from calltracking.store.deciders import DeciderService
from calltracking.store.sites import Site
from calltracking.store.visitors import Hello, Welcome
from tests.integration.pbx import until
from tests.store.seed import DESKTOP_UA, T0, seed_site
from tests.support.services import AMQP_HOST, AMQP_PORT
from tests.support.tcpproxy import TcpProxy

pytestmark = pytest.mark.rabbitmq


@dataclass
class Node:
    name: str
    service: DeciderService
    owners: RabbitOwners

    async def hello(self, site: Site, n: int) -> Welcome:
        hello = Hello(
            url=f"https://shop.example/p{n}",
            referrer="",
            user_agent=DESKTOP_UA,
            address=f"10.1.{n // 250}.{n % 250}",
        )
        return await self.service.hello(site, hello, T0)


async def start_node(
    stack: contextlib.AsyncExitStack,
    db: Database,
    amqp_url: str,
    name: str,
    prefix: str,
    **owner_options: float,
) -> Node:
    """A decider that owns shards as `name` through `amqp_url`, closed with `stack`."""
    service = DeciderService(db, name, "7")
    owners = RabbitOwners(amqp_url, name, service.serve, prefix=prefix, **owner_options)
    await owners.start()
    stack.push_async_callback(owners.close)
    stack.push_async_callback(service.close)
    service.use_owners(owners)
    return Node(name, service, owners)


@pytest.fixture
async def cluster(
    pg_db: Database, pg_url: str, amqp_url: str
) -> AsyncIterator[tuple[Node, Node, str]]:
    """Nodes a and b, each with its own connection pool, on one database and one vhost; the
    queue prefix keeps this test's shards apart from other tests'."""
    prefix = f"test.decide.{secrets.token_hex(4)}."
    async with contextlib.AsyncExitStack() as stack:
        nodes = []
        for name in ("node-a", "node-b"):
            db = pg_db if name == "node-a" else Database(pg_url)
            if db is not pg_db:
                stack.push_async_callback(db.close)
            nodes.append(await start_node(stack, db, amqp_url, name, prefix, timeout_s=3.0))
        yield nodes[0], nodes[1], prefix


async def active_leases(db: Database, site_id: str) -> list[str]:
    async with db.read() as conn:
        rows = await conn.execute(
            sa.select(t.leases.c.number).where(
                t.leases.c.site_id == site_id, t.leases.c.ended_at.is_(None)
            )
        )
        return [row.number for row in rows]


async def test_the_node_that_does_not_own_a_site_forwards_its_hellos_to_the_owner(
    cluster: tuple[Node, Node, str], pg_db: Database
) -> None:
    a, b, _ = cluster
    site = await seed_site(pg_db, reserve=60, max_numbers=100, pool_max=60)
    first = await a.hello(site, 0)  # nobody owned the shard: a claims it
    assert a.owners.owns(site.id) and not b.owners.owns(site.id)

    welcomes = await asyncio.gather(
        *(a.hello(site, n) for n in range(1, 21)), *(b.hello(site, n) for n in range(21, 41))
    )

    numbers = [w.shown.e164 for w in (first, *welcomes)]
    assert all(w.shown.kind is DisplayKind.DYNAMIC for w in welcomes)
    assert len(set(numbers)) == 41  # nobody was told a number another visitor holds
    assert sorted(await active_leases(pg_db, site.id)) == sorted(numbers)
    assert b.owners.counts["forwarded"] == 20 and a.owners.counts["served"] == 20
    assert site.id not in b.service._batches.slots  # b never decided for the site
    async with pg_db.read() as conn:
        nodes = (await conn.execute(sa.select(t.tabs.c.node_id))).scalars().all()
    assert sorted(set(nodes)) == ["node-a", "node-b"] and nodes.count("node-b") == 20


async def test_a_forwarded_tab_close_ends_the_visitors_tab_on_the_owner(
    cluster: tuple[Node, Node, str], pg_db: Database
) -> None:
    a, b, _ = cluster
    site = await seed_site(pg_db, reserve=10, max_numbers=20)
    await a.hello(site, 0)
    welcome = await b.hello(site, 1)
    shown, _ = await b.service.activity(site, welcome.visitor_id, welcome.tab_id, T0)
    assert shown == welcome.shown
    assert await b.service.current(welcome.visitor_id, T0) == welcome.shown
    await b.service.visibility(welcome.tab_id, False, T0)
    async with pg_db.read() as conn:
        visible = await conn.scalar(
            sa.select(t.tabs.c.visible).where(t.tabs.c.id == welcome.tab_id)
        )
    assert visible is False

    await b.service.tab_closed(site, welcome.visitor_id, welcome.tab_id, T0)

    async with pg_db.read() as conn:
        tab = await conn.scalar(sa.select(t.tabs.c.id).where(t.tabs.c.id == welcome.tab_id))
    assert tab is None
    engine = a.service._batches.slots[site.id].engine
    assert engine is not None and not engine.visitors[welcome.visitor_id].tabs
    assert b.owners.counts["forwarded"] == 5  # hello, activity, current, visibility, close
    assert site.id not in b.service._batches.slots


async def test_when_the_owner_goes_away_another_node_claims_the_site_and_decides(
    cluster: tuple[Node, Node, str], pg_db: Database
) -> None:
    a, b, _ = cluster
    site = await seed_site(pg_db, reserve=10, max_numbers=20)
    before = await a.hello(site, 0)
    await a.owners.close()  # the broker frees a's shards with its connection

    after = await b.hello(site, 1)

    assert b.owners.owns(site.id) and b.owners.counts["claimed"] == 1
    assert after.shown.kind is DisplayKind.DYNAMIC and after.shown.e164 != before.shown.e164
    assert sorted(await active_leases(pg_db, site.id)) == sorted(
        [before.shown.e164, after.shown.e164]
    )


async def test_a_node_that_lost_the_broker_still_runs_its_sites_due_times(
    cluster: tuple[Node, Node, str], pg_db: Database
) -> None:
    """Without the broker nobody can forward or claim: each node decides what it has, under
    the site's lock, as with no owners at all; a lease still expires on time."""
    a, _, _ = cluster
    site = await seed_site(pg_db, reserve=10, max_numbers=20, idle_timeout_s=60)
    welcome = await a.hello(site, 0)
    assert a.owners.owns(site.id)
    await a.owners.close()  # as when its connection drops: it owns nothing now

    changed = await a.service.sweep(T0 + timedelta(minutes=2))  # idle, not yet stale

    assert welcome.visitor_id in changed
    assert await active_leases(pg_db, site.id) == []
    later = await a.hello(site, 1)  # and still answers its sockets itself
    assert later.shown.kind is DisplayKind.DYNAMIC and a.service.fallbacks == 0


async def test_a_node_cut_off_from_the_broker_owns_nothing_then_claims_again_when_back(
    pg_db: Database, amqp_vhost: str
) -> None:
    """The connection really drops (a proxy cuts it): the node's shards are freed with its
    exclusive queues, it decides what it has meanwhile, and once reconnected it claims and
    serves a shard again."""
    site = await seed_site(pg_db, reserve=10, max_numbers=20)
    proxy = await TcpProxy(AMQP_HOST, AMQP_PORT).start()
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/{amqp_vhost}"
    prefix = f"test.decide.{secrets.token_hex(4)}."
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(proxy.stop)
        node = await start_node(stack, pg_db, url, "node-a", prefix, reconnect_s=0.1)
        service, owners = node.service, node.owners
        await node.hello(site, 0)
        assert owners.owns(site.id)
        proxy.cut()
        await until(lambda: not owners.connected)
        assert not owners.owns(site.id)
        cut_off = await node.hello(site, 1)  # decided here, under the site's lock
        proxy.restore()
        await until(lambda: owners.connected)
        back = await node.hello(site, 2)  # nobody owns the shard: claimed again
        assert owners.owns(site.id)
    assert owners.counts["lost"] == 1 and owners.counts["claimed"] == 2
    assert cut_off.shown.kind is back.shown.kind is DisplayKind.DYNAMIC
    assert service.fallbacks == 0  # nothing was forwarded into the void


async def hello_past_a_stuck_owner(
    db: Database, amqp_url: str, site: Site, stuck_serve: Serve, hung: asyncio.Event
) -> tuple[Welcome, DeciderService, RabbitOwners]:
    """Node b says hello for a site whose shard `stuck_serve` holds, which never answers
    until `hung` is set; b's forwards time out after 0.5 s."""
    prefix = f"test.decide.{secrets.token_hex(4)}."
    stuck = RabbitOwners(amqp_url, "stuck", stuck_serve, prefix=prefix)
    service = DeciderService(db, "node-b", "7")
    owners = RabbitOwners(amqp_url, "node-b", service.serve, prefix=prefix, timeout_s=0.5)
    # Each part is closed whatever failed after it started (a leaked reconnect loop would
    # outlive this test and fail a later one).
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(service.close)
        stack.push_async_callback(stuck.close)
        await stuck.start()
        stack.push_async_callback(owners.close)
        stack.callback(hung.set)  # first: the stuck owner lets go before anything closes
        await owners.start()
        service.use_owners(owners)
        assert await stuck.claim(site.id)
        welcome = await Node("node-b", service, owners).hello(site, 1)
    return welcome, service, owners


async def test_an_owner_that_does_not_answer_leaves_the_change_to_the_asking_node(
    pg_db: Database, amqp_url: str
) -> None:
    """The owner's process hangs: the asking node waits its timeout, then decides itself,
    under the site's lock as before; the visitor still gets a committed number of its own."""
    site = await seed_site(pg_db, reserve=10, max_numbers=20)
    hung = asyncio.Event()

    async def never(request: fw.Request) -> fw.Result:
        await hung.wait()
        return None

    welcome, service, owners = await hello_past_a_stuck_owner(pg_db, amqp_url, site, never, hung)
    assert welcome.shown.kind is DisplayKind.DYNAMIC
    assert service.fallbacks == 1 and owners.counts["timed_out"] == 1
    assert await active_leases(pg_db, site.id) == [welcome.shown.e164]


async def test_a_hello_the_owner_committed_but_never_answered_is_not_opened_twice(
    pg_db: Database, pg_url: str, amqp_url: str
) -> None:
    """The owner stores the forwarded hello and hangs before answering: the asking node's
    own decision finds the tab already there and tells its socket that visitor's number, so
    the socket has one visitor, one tab and one lease, not two."""
    site = await seed_site(pg_db, reserve=10, max_numbers=20)
    owner_db = Database(pg_url)
    owner = DeciderService(owner_db, "owner", "7")
    hung = asyncio.Event()

    async def commit_then_hang(request: fw.Request) -> fw.Result:
        await owner.serve(request)
        await hung.wait()
        return None

    try:
        welcome, service, owners = await hello_past_a_stuck_owner(
            pg_db, amqp_url, site, commit_then_hang, hung
        )
    finally:
        await owner.close()
        await owner_db.close()
    assert service.fallbacks == 1 and owners.counts["timed_out"] == 1
    async with pg_db.read() as conn:
        tabs = (await conn.execute(sa.select(t.tabs.c.id, t.tabs.c.visitor_id))).all()
        visitors = (await conn.execute(sa.select(t.visitors.c.id))).scalars().all()
    assert tabs == [(welcome.tab_id, welcome.visitor_id)] and visitors == [welcome.visitor_id]
    assert await active_leases(pg_db, site.id) == [welcome.shown.e164]
    assert welcome.shown.kind is DisplayKind.DYNAMIC and welcome.visit_id


async def test_garbage_on_a_shard_queue_gets_error_replies_and_the_owner_keeps_serving(
    cluster: tuple[Node, Node, str], pg_db: Database, amqp_url: str
) -> None:
    a, b, prefix = cluster
    site = await seed_site(pg_db, reserve=10, max_numbers=20)
    welcome = await a.hello(site, 0)
    good = fw.request_json(fw.CurrentRequest(site.id, T0, welcome.visitor_id))
    garbage = [
        b"",
        b"\xff\xfe",
        b"[]",
        b'{"requests":[]}',
        json.dumps({"requests": [{"op": "evil", "site": "x", "now": "x"}, good]}).encode(),
    ]
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        replies = await channel.declare_queue(exclusive=True)
        for n, body in enumerate(garbage):
            await channel.default_exchange.publish(
                aio_pika.Message(body, correlation_id=str(n), reply_to=replies.name),
                routing_key=f"{prefix}{shard_of(site.id)}",
            )
        answers: dict[str, Any] = {}
        # Bounded: an owner that answered nothing fails the test instead of hanging it.
        async with asyncio.timeout(10), replies.iterator() as messages:
            async for message in messages:
                await message.ack()
                answers[message.correlation_id or ""] = json.loads(message.body)
                if len(answers) == len(garbage):
                    break
    finally:
        await connection.close()
    for n in range(4):
        assert answers[str(n)]["error"].startswith("malformed batch")
    bad, fine = answers["4"]["replies"]
    assert bad["error"].startswith("malformed request")
    assert fine["ok"]["e164"] == welcome.shown.e164  # its neighbour was answered as usual
    assert a.owners.counts["malformed"] == 5
    later = await b.hello(site, 1)  # still served by a
    assert later.shown.kind is DisplayKind.DYNAMIC and b.owners.counts["forwarded"] == 1


async def test_changes_forwarded_in_one_turn_of_the_loop_travel_as_one_message(
    cluster: tuple[Node, Node, str], pg_db: Database
) -> None:
    a, b, _ = cluster
    site = await seed_site(pg_db, reserve=30, max_numbers=40, pool_max=30)
    await a.hello(site, 0)
    welcomes = await asyncio.gather(*(b.hello(site, n) for n in range(1, 21)))
    assert len({w.shown.e164 for w in welcomes}) == 20
    assert b.owners.counts["forwarded"] == 20
    assert b.owners.counts["batches"] == 1

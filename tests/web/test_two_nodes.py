"""Two `calltracking serve --only web` processes sharing the real PostgreSQL and RabbitMQ serve
one installation: a visitor's two tabs on two nodes see the same number, a revocation decided
on either node reaches both, and when the node deciding for a site is killed the other takes
the site over from the database."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aio_pika
import aiohttp
import aiormq
import pytest
import sqlalchemy as sa

from calltracking.cluster.rabbit import QUEUE_PREFIX
from calltracking.cluster.shards import shard_of
from calltracking.core.engine.parts import decision_key, part_of
from calltracking.core.kinds import AttributionKind
from calltracking.store import schema as t
from calltracking.store.db import Database
from calltracking.store.site_split import split_site
from calltracking.store.sites import Site
from tests.store.seed import seed_site
from tests.web.harness import Tab, hello

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def node(db_url: str, amqp_url: str) -> AsyncIterator[int]:
    async with node_process(db_url, amqp_url) as (port, _):
        yield port


@asynccontextmanager
async def node_process(
    db_url: str, amqp_url: str
) -> AsyncIterator[tuple[int, asyncio.subprocess.Process]]:
    port = _free_port()
    env = {
        **os.environ,
        "CALLTRACKING_DATABASE_URL": db_url,
        "CALLTRACKING_AMQP_URL": amqp_url,
        "CALLTRACKING_HTTP_PORT": str(port),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "calltracking.cli",
        "serve",
        "--only",
        "web",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(150):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if proc.returncode is not None:
                    err = await proc.stderr.read() if proc.stderr else b""
                    raise AssertionError(f"node died: {err.decode()[-2000:]}")
                await asyncio.sleep(0.1)
        yield port, proc
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


async def _until_no_owner(amqp_url: str, site_id: str, timeout: float = 15.0) -> None:
    """Until the broker has dropped the site's shard queue (its owner's connection is gone).
    A hello forwarded before that is lost with the queue and waits out the forward's timeout
    (the third test covers that case); this test is about the claim that follows."""
    connection = await aio_pika.connect(amqp_url)
    try:
        async with asyncio.timeout(timeout):
            while True:
                channel = await connection.channel()
                try:
                    await channel.declare_queue(QUEUE_PREFIX + str(shard_of(site_id)), passive=True)
                except aiormq.exceptions.ChannelNotFoundEntity:
                    return
                except aiormq.exceptions.ChannelLockedResource:
                    pass  # still held: the broker has not yet seen the owner's connection close
                else:
                    await channel.close()
                await asyncio.sleep(0.05)
    finally:
        await connection.close()


async def _tab(http: aiohttp.ClientSession, port: int) -> Tab:
    ws = await http.ws_connect(
        f"http://127.0.0.1:{port}/ws",
        headers={
            "Origin": "https://shop.example",
            "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 Safari/537.36",
        },
    )
    return Tab(ws)


async def _welcomed(tab: Tab, site: Site) -> tuple[str, str]:
    """(visitor, number) a new visitor's tab was told."""
    await tab.send({"type": "hello", "site": site.key, "url": "https://shop.example/"})
    welcome = await tab.next(timeout=20)
    assert welcome["type"] == "welcome", welcome
    return welcome["visitor"], (await tab.until_kind("dynamic", timeout=20))["e164"]


async def _open_leases(db: Database, site_id: str) -> set[tuple[str, str]]:
    async with db.read() as conn:
        rows = await conn.execute(
            sa.select(t.leases.c.visitor_id, t.leases.c.number).where(
                t.leases.c.site_id == site_id, t.leases.c.ended_at.is_(None)
            )
        )
        return {(visitor, number) for visitor, number in rows}


async def test_revocation_reaches_tabs_on_both_nodes(pg_db: Database, amqp_url: str) -> None:
    site = await seed_site(pg_db, reserve=3, idle_timeout_s=3)
    async with (
        node(pg_db.url, amqp_url) as port_a,
        node(pg_db.url, amqp_url) as port_b,
        aiohttp.ClientSession() as http,
    ):
        on_a = await _tab(http, port_a)
        welcome = await hello(on_a, site)
        number = (await on_a.until_kind("dynamic"))["e164"]
        on_b = await _tab(http, port_b)
        await hello(on_b, site, visitor=welcome["visitor"])
        assert (await on_b.until_kind("dynamic"))["e164"] == number
        expired_a = await on_a.until_kind("expired", timeout=15)
        expired_b = await on_b.until_kind("expired", timeout=15)
        assert expired_a["e164"] == expired_b["e164"] == site.defaults[AttributionKind.EXPIRED]
        # Activity on node B asks for the number again; node A's tab follows.
        await on_b.send({"type": "activity"})
        back_b = await on_b.until_kind("dynamic", timeout=10)
        back_a = await on_a.until_kind("dynamic", timeout=10)
        assert back_a["e164"] == back_b["e164"] == number


async def test_when_the_deciding_node_is_killed_the_other_takes_its_site_over(
    pg_db: Database, amqp_url: str
) -> None:
    site = await seed_site(pg_db, reserve=10, idle_timeout_s=4)
    async with (
        node_process(pg_db.url, amqp_url) as (port_a, proc_a),
        node(pg_db.url, amqp_url) as port_b,
        aiohttp.ClientSession() as http,
    ):
        on_a = await _tab(http, port_a)
        await hello(on_a, site)  # the site's first hello: node A claims the site's shard
        first = (await on_a.until_kind("dynamic"))["e164"]
        on_b = await _tab(http, port_b)
        await hello(on_b, site)  # decided by A, for B's socket
        second = (await on_b.until_kind("dynamic"))["e164"]

        with pytest.raises(TimeoutError):  # A holds the shard's queue
            await _until_no_owner(amqp_url, site.id, timeout=0.5)
        proc_a.send_signal(signal.SIGKILL)
        await proc_a.wait()
        await _until_no_owner(amqp_url, site.id)
        newcomer = await _tab(http, port_b)
        await hello(newcomer, site)  # nobody owns the shard now: B claims it
        third = (await newcomer.until_kind("dynamic", timeout=15))["e164"]
        # B reloaded the site from the database: its earlier visitor's lease runs on, and
        # its idle timeout still revokes it.
        expired = await on_b.until_kind("expired", timeout=15)
        async with http.get(f"http://127.0.0.1:{port_b}/metrics") as response:
            metrics = await response.text()
        async with pg_db.read() as conn:
            leases = (
                await conn.execute(
                    sa.select(t.leases.c.number, t.leases.c.ended_at).where(
                        t.leases.c.site_id == site.id
                    )
                )
            ).all()

    assert len({first, second, third}) == 3
    assert expired["e164"] == site.defaults[AttributionKind.EXPIRED]
    assert sorted(number for number, _ in leases) == sorted([first, second, third])
    assert any(number == second and ended_at is not None for number, ended_at in leases)
    # B forwarded its first visitor's hello to A, then claimed the site when A was gone.
    assert 'calltracking_forwarding_total{outcome="forwarded"} 1' in metrics
    assert 'calltracking_forwarding_total{outcome="claimed"} 1' in metrics


async def test_hellos_forwarded_to_an_owner_killed_mid_flight_still_get_committed_numbers(
    pg_db: Database, amqp_url: str
) -> None:
    """The owner is SIGKILLed while the other node's forwarded hellos are in flight: each of
    those sockets still gets a number (the forward fails or times out, and its own node
    decides), every number told is an open lease of the visitor it was told to, and no number
    is told twice."""
    site = await seed_site(pg_db, reserve=60, pool_max=60)
    async with (
        node_process(pg_db.url, amqp_url) as (port_a, proc_a),
        node(pg_db.url, amqp_url) as port_b,
        aiohttp.ClientSession() as http,
    ):
        first = await _tab(http, port_a)
        await hello(first, site)  # node A claims the site's shard
        await first.until_kind("dynamic")
        tabs = [await _tab(http, port_b) for _ in range(30)]

        # A hello forwarded just before the kill waits the forward's timeout (5 s).
        asking = [asyncio.create_task(_welcomed(tab, site)) for tab in tabs]
        await asyncio.sleep(0.05)  # some forwarded, some answered, some not yet sent
        proc_a.send_signal(signal.SIGKILL)
        told = await asyncio.gather(*asking)
        open_leases = await _open_leases(pg_db, site.id)

    assert len({number for _, number in told}) == len(told)  # nobody shares a number
    assert set(told) <= open_leases  # each told number is its visitor's committed lease


async def test_a_split_site_keeps_its_numbers_when_a_parts_owner_is_killed_mid_flight(
    pg_db: Database, amqp_url: str
) -> None:
    """A site split in two (`calltracking split-site`), each node deciding its own sockets'
    new visitors in its own part. Node A is SIGKILLed while both nodes' hellos are in flight:
    every socket of B gets a number, every number told is an open lease of the visitor it was
    told to and no number is told twice; a visitor of A's part who comes back on B keeps its
    number (B claims the part and loads it from the database)."""
    site = await seed_site(pg_db, reserve=80, max_numbers=100, pool_max=80)
    await split_site(pg_db, site.id, 2)
    async with (
        node_process(pg_db.url, amqp_url) as (port_a, proc_a),
        node(pg_db.url, amqp_url) as port_b,
        aiohttp.ClientSession() as http,
    ):
        on_a = await _tab(http, port_a)
        visitor_a = (await hello(on_a, site))["visitor"]
        number_a = (await on_a.until_kind("dynamic"))["e164"]
        on_b = await _tab(http, port_b)
        visitor_b = (await hello(on_b, site))["visitor"]
        number_b = (await on_b.until_kind("dynamic"))["e164"]
        assert part_of(visitor_a, 2) != part_of(visitor_b, 2)  # a part each
        tabs_b = [await _tab(http, port_b) for _ in range(20)]
        tabs_a = [await _tab(http, port_a) for _ in range(10)]

        asking_b = [asyncio.create_task(_welcomed(tab, site)) for tab in tabs_b]
        asking_a = [asyncio.create_task(_welcomed(tab, site)) for tab in tabs_a]
        await asyncio.sleep(0.05)
        proc_a.send_signal(signal.SIGKILL)
        told = [(visitor_b, number_b), *await asyncio.gather(*asking_b)]
        answered_on_a = await asyncio.gather(*asking_a, return_exceptions=True)
        told += [r for r in answered_on_a if isinstance(r, tuple)]

        # Until the broker dropped A's part's queue: a forward before that waits out its
        # timeout (the test above covers it), and this one is about B claiming the part.
        await _until_no_owner(amqp_url, decision_key(site.id, part_of(visitor_a, 2), 2))
        back = await _tab(http, port_b)
        assert (await hello(back, site, visitor=visitor_a))["visitor"] == visitor_a
        assert (await back.until_kind("dynamic", timeout=20))["e164"] == number_a
        open_leases = await _open_leases(pg_db, site.id)

    assert len({number for _, number in told}) == len(told)  # nobody shares a number
    assert set(told) <= open_leases  # each told number is its visitor's committed lease
    assert (visitor_a, number_a) in open_leases

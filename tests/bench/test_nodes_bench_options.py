"""bench.nodes_bench offers each layout the handshakes in flight its options say, and with
`--site-per-node` gives each node a site of its own."""

from __future__ import annotations

import sqlalchemy as sa

from bench.common import seed_site
from bench.nodes_bench import _in_flight, _own_sites, parse_args
from calltracking.cluster.shards import shard_of
from calltracking.store import schema as t
from calltracking.store.db import Database

SERVERS = ["--database-url", "postgresql+asyncpg://x/y", "--amqp-url", "amqp://x/"]


def test_in_flight_is_the_same_for_every_layout_by_default() -> None:
    args = parse_args(["--opening", "100", *SERVERS])
    assert [_in_flight(args, nodes) for nodes in (1, 2, 3)] == [100, 100, 100]


def test_in_flight_grows_with_the_web_nodes_when_asked_per_node() -> None:
    args = parse_args(["--opening", "100", "--opening-per-node", *SERVERS])
    assert [_in_flight(args, nodes) for nodes in (1, 2, 3)] == [100, 200, 300]


async def test_a_site_per_node_gives_each_node_its_own_numbers_and_shard(
    sqlite_db: Database,
) -> None:
    args = parse_args(["-n", "20", "--site-per-node", "--grown", *SERVERS])
    first = await seed_site(sqlite_db, pool=args.n + 100, grown=True)
    sites = await _own_sites(sqlite_db, first, 3, args)
    assert sites[0] == first
    assert len({shard_of(site.id) for site in sites}) == 3
    async with sqlite_db.read() as conn:
        rows = (await conn.execute(sa.select(t.numbers.c.site_id, t.numbers.c.e164))).all()
    by_site: dict[str, set[str]] = {}
    for site_id, e164 in rows:
        by_site.setdefault(site_id, set()).add(e164)
    chosen = [by_site[site.id] for site in sites]
    assert all(len(numbers) >= args.n for numbers in chosen)
    assert not set.intersection(*chosen)

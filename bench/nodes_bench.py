"""One busy site's new visitors on one `--only web` node against two (PostgreSQL + RabbitMQ).

For each layout (one web node, then two) a fresh database and a fresh RabbitMQ vhost are made,
one site is seeded with a reserve of `--pool` numbers (`-n` + 100 by default), and the nodes
start as `calltracking serve --only web` children beside one `--only workers` node (the outbox
relay to RabbitMQ).
`-n` new visitors then open sockets, at most `--opening` handshakes in flight (`--opening` per
web node with `--opening-per-node`: "in flight"), spread round robin over the web nodes' ports;
each sends a hello and waits for its number. Reported per layout: new visitors per second
(all opened / time), p50 and p99 from hello to number, the CPU of the web nodes per new
visitor, and double leases: numbers shown to two open sockets at once, and numbers with more
than one open lease in the database (both must be 0). Runs repeat `--repeat` times with the
layouts interleaved; the table shows medians.

What the hellos set off outlives them: the outbox relay publishes their `lease.assigned`
events and every node consumes them. So the report also gives the events still unpublished
when the last socket got its number ("backlog"), the seconds until the outbox was empty
after that ("drained s"), the CPU of all nodes (web and workers) per visitor up to then
("all nodes CPU ms/visitor"), RabbitMQ's CPU per visitor over the same time when it runs on
this host ("broker CPU ms/visitor"), PostgreSQL's the same way ("database CPU ms/visitor":
`bench.common.local_postgres_cpu_seconds`, other clients of the server included), and the share
of the whole host's CPU busy while the sockets opened ("host busy %": what one more node could
still use on this machine).

Last, every visitor leaves at once (all sockets closed together): "closes/s" until the store
holds no tab, and the web nodes' and the database's CPU per close meanwhile ("web CPU ms/close",
"database CPU ms/close"). A visitor leaves once for every time it arrives.

`--web-cpu 0.25` holds every web node to a quarter of a core (a cgroup each, bench/cpu_quota.py;
needs root): each node is then a small machine of its own, the client, PostgreSQL, RabbitMQ
and the workers node keep the rest of the host, and one node against two measures what a
second node adds rather than what the host has left. "busiest web node throttled %" is then
the share of the run the kernel held that node back (high: its quota was the limit), and "web
quota used %" the share of the web nodes' quotas they spent. That share is what the comparison
rests on: near 100 in both layouts, each layout ran at what its nodes can carry. When the two
nodes spend clearly less of theirs than the one node did while "host busy %" is high, the
client, PostgreSQL, RabbitMQ and the workers node left them too little of this host (the
faster the nodes are beside the rest, the sooner), and the ratio measures the host, not the
second node.

`--parts 2` splits the site into two parts (`calltracking split-site`) in the runs with several
web nodes: each node then decides its own sockets' new visitors in the part it owns. The
one-node run keeps the site whole, its best layout, so "x one node" compares best with best.

"web wake-ups/visitor" and "web preempted/visitor" count the web nodes' event-loop threads'
voluntary context switches (the loop went to sleep: nothing was ready) and involuntary ones
(the kernel took the core away: the quota ran out, or another process ran), per visitor.
`--cpu-samples DIR` samples every node's CPU time while the sockets open (bench/sampler_site/)
and writes each run's samples there; `python -m bench.cpu_samples` compares the layouts.

The sockets open only once the workers node relays the outbox and no web node does (the nodes
start together, and a web node relays until it sees a workers process: a second or two that
used to fall inside the run). "client CPU %" is this process's share of one core while the
sockets opened: near 100, the client would be what limits the run.

    python -m bench.nodes_bench -n 1000 --repeat 3 \\
        --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/test \\
        --amqp-url amqp://guest:guest@127.0.0.1:5672/
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa
from yarl import URL

from bench.common import (
    context_switches,
    cpu_seconds,
    fresh_database,
    host_jiffies,
    local_broker_pid,
    local_postgres_cpu_seconds,
    local_postgres_cpu_since,
    machine,
    median_row,
    percentile,
    quiet_logging,
    raise_nofile,
    seed_site,
    table,
    user_and_kernel_seconds,
)
from bench.cpu_quota import Limited, cpu_quota
from bench.cpu_samples import finish_sampling, sampler_env, start_sampling
from bench.soak_nodes import Nodes, Sockets, free_port, tracker_nodes
from calltracking.cluster.shards import shard_of
from calltracking.store import schema as t
from calltracking.store.db import Database
from calltracking.store.migrate import migrate
from calltracking.store.site_split import split_site
from calltracking.store.sites import Site


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=1000, help="new visitors per run")
    parser.add_argument("--opening", type=int, default=100, help="handshakes in flight at most")
    parser.add_argument(
        "--opening-per-node",
        action="store_true",
        help="--opening handshakes in flight per web node (a layout of two offers twice as "
        "many): each node then meets the load one node met, as when a site's traffic grows "
        "and a node is added for it",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2], help="web nodes per run")
    parser.add_argument("--database-url", required=True, help="a PostgreSQL server")
    parser.add_argument("--amqp-url", required=True, help="a RabbitMQ server (any vhost)")
    parser.add_argument(
        "--parts",
        type=int,
        default=1,
        help="split the site into this many parts in runs with several web nodes "
        "(`calltracking split-site`); one node keeps it whole, its best layout [1]",
    )
    parser.add_argument(
        "--site-per-node",
        action="store_true",
        help="in runs with several web nodes, a site of its own for each node (the same pool "
        "each) and each node's sockets to its own: what the nodes carry when they share "
        "nothing but this host and the database, the most any layout of one site could reach",
    )
    parser.add_argument(
        "--grown",
        action="store_true",
        help="start with the pool grown to its size (a running site) instead of growing it "
        "from the reserve number by number as the visitors come",
    )
    parser.add_argument(
        "--pool",
        type=int,
        default=0,
        help="numbers in the site's pool [-n + 100]; with --all-to-first and --parts 2, at "
        "least 2n so that the first node's part does not run out",
    )
    parser.add_argument(
        "--all-to-first",
        action="store_true",
        help="open every socket on the first web node: with a split site the other nodes "
        "then decide nothing, and the first shows what its part costs it alone",
    )
    parser.add_argument(
        "--cpu-samples",
        type=Path,
        default=None,
        help="sample every node's CPU while the sockets open (bench/sampler_site/) and write "
        "the samples with a JSON per run and layout into this folder, for `python -m "
        "bench.cpu_samples`",
    )
    parser.add_argument(
        "--web-cpu",
        type=float,
        default=0.0,
        help="cores each web node may use (cgroup quota, needs root; 0: unlimited)",
    )
    return parser.parse_args(argv)


@contextlib.contextmanager
def fresh_vhost(amqp_url: str) -> Iterator[str]:
    """A new RabbitMQ vhost (guest may use it), deleted afterwards; yields its URL."""
    vhost = f"ct_bench_{secrets.token_hex(4)}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True)
    try:
        subprocess.run(
            ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
            check=True,
        )
        yield str(URL(amqp_url).with_path("/" + vhost))
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], check=False)


@contextlib.asynccontextmanager
async def _database(server_url: str) -> AsyncIterator[tuple[str, Database]]:
    async with fresh_database(server_url) as url:
        db = Database(url)
        try:
            await migrate(db)
            yield url, db
        finally:
            await db.close()


async def run_once(
    args: argparse.Namespace, web_nodes: int, samples: Path | None = None
) -> dict[str, float]:
    """One layout's run; with `samples` (a path prefix) its nodes' CPU is sampled."""
    with tempfile.TemporaryDirectory(prefix="nodes-bench-") as tmp:
        async with _database(args.database_url) as (db_url, db):
            site = await seed_site(db, pool=args.pool or args.n + 100, grown=args.grown)
            sites = [site]
            if web_nodes > 1 and args.site_per_node:
                sites = await _own_sites(db, site, web_nodes, args)
            if web_nodes > 1 and args.parts > 1:
                await split_site(db, site.id, args.parts)
            with fresh_vhost(args.amqp_url) as amqp_url:
                env = {
                    "CALLTRACKING_DATABASE_URL": db_url,
                    "CALLTRACKING_AMQP_URL": amqp_url,
                    "CALLTRACKING_RECORDINGS_DIR": tmp,
                    "CALLTRACKING_WS_MAX_PER_ADDRESS": "1000000",
                    "CALLTRACKING_TRUSTED_PROXIES": "127.0.0.1",
                    **(sampler_env(samples) if samples else {}),
                }
                layout: list[tuple[str, str | None]] = [
                    (f"web{i + 1}", "web") for i in range(web_nodes)
                ]
                layout.append(("workers", "workers"))
                async with tracker_nodes(env, True, free_port(), layout=layout) as nodes:
                    webs = [n for n in nodes.nodes if n.web]
                    quota: contextlib.AbstractContextManager[list[Limited]] = (
                        cpu_quota([n.proc.pid for n in webs], args.web_cpu)
                        if args.web_cpu
                        else contextlib.nullcontext([])
                    )
                    connector = aiohttp.TCPConnector(limit=0)
                    async with aiohttp.ClientSession(connector=connector) as http:
                        await _workers_relaying(http, nodes)
                        with quota as limited:
                            row = await _measure(args, sites, nodes, http, db, limited, samples)
    return {"web nodes": web_nodes, **row}


async def _own_sites(db: Database, first: Site, count: int, args: argparse.Namespace) -> list[Site]:
    """`count` sites, `first` among them, each in a shard of its own: each then has its own
    owner, the node its sockets go to (a shard shared by two sites would have one owner)."""
    sites = [first]
    index = 1
    while len(sites) < count:
        site = await seed_site(db, pool=args.pool or args.n + 100, grown=args.grown, index=index)
        index += 1
        if shard_of(site.id) not in {shard_of(s.id) for s in sites}:
            sites.append(site)
    return sites


async def _measure(
    args: argparse.Namespace,
    sites: list[Site],
    nodes: Nodes,
    http: aiohttp.ClientSession,
    db: Database,
    limited: list[Limited],
    samples: Path | None = None,
) -> dict[str, float]:
    webs = [n for n in nodes.nodes if n.web]
    ports = nodes.web_ports[:1] if args.all_to_first else nodes.web_ports
    in_flight = _in_flight(args, len(ports))
    sockets = Sockets(
        sites[0],
        ports,
        asyncio.Semaphore(in_flight),
        own_addresses=True,
        sites=sites if len(sites) > 1 else None,
    )
    every = [n.proc.pid for n in nodes.nodes]
    broker = local_broker_pid()
    broker0 = cpu_seconds(broker) if broker is not None else 0.0
    database0 = local_postgres_cpu_seconds()
    # Scraped outside the CPU figures: a /metrics request reads the pools' gauges, tens of
    # milliseconds of a node's CPU, which counted as the visitors' (twice per node) before.
    batches0 = [await _batches(http, n.port) for n in webs]
    cpu0 = [cpu_seconds(n.proc.pid) for n in webs]
    kernel0 = sum(user_and_kernel_seconds(n.proc.pid)[1] for n in webs)
    all0 = sum(cpu_seconds(pid) for pid in every)
    throttled0 = [limit.throttled_s() for limit in limited]
    switches0 = [context_switches(n.proc.pid) for n in webs]
    host0 = host_jiffies()
    client0 = cpu_seconds()
    each0 = {pid: cpu_seconds(pid) for pid in every} if samples else {}
    if samples:
        start_sampling(every)
    begin = time.perf_counter()
    await sockets.open_many(args.n)
    elapsed = time.perf_counter() - begin
    client = cpu_seconds() - client0
    spent = [
        (n.name, n.proc.pid, cpu_seconds(n.proc.pid) - each0[n.proc.pid])
        for n in (nodes.nodes if samples else [])
    ]
    cpu = [cpu_seconds(n.proc.pid) - before for n, before in zip(webs, cpu0, strict=True)]
    switches = [
        (now[0] - before[0], now[1] - before[1])
        for now, before in zip((context_switches(n.proc.pid) for n in webs), switches0, strict=True)
    ]
    kernel = sum(user_and_kernel_seconds(n.proc.pid)[1] for n in webs) - kernel0
    throttled = [
        limit.throttled_s() - before for limit, before in zip(limited, throttled0, strict=True)
    ]
    host1 = host_jiffies()
    if samples:  # after the figures above: writing the samples is not the visitors' CPU
        await finish_sampling(samples, spent, args.n)
    backlog, drained = await _drained(db, DRAIN_WITHIN_S)
    all_cpu = sum(cpu_seconds(pid) for pid in every) - all0
    broker_cpu = cpu_seconds(broker) - broker0 if broker is not None else None
    database_cpu = local_postgres_cpu_since(database0)
    batches = sum([await _batches(http, n.port) for n in webs]) - sum(batches0)
    forwarding = sum([await _forwarding(http, n.port) for n in webs], Counter[str]())
    shown = sockets.leased_numbers()
    async with db.read() as conn:
        doubled_in_db = await _numbers_leased_twice(conn)
    closes = await _closes(sockets, db, webs)
    shown_twice = sum(1 for count in Counter(shown).values() if count > 1)
    row = {
        "in flight": in_flight,
        "dynamic": len(shown),
        "failed": sockets.failed,
        "new visitors/s": args.n / elapsed,
        "p50 ms": percentile(sockets.hello_ms, 50),
        "p99 ms": percentile(sockets.hello_ms, 99),
        "web CPU ms/visitor": sum(cpu) * 1000 / args.n,
        "busiest web node CPU ms/visitor": max(cpu) * 1000 / args.n,
        "web CPU in the kernel %": 100 * kernel / max(sum(cpu), 1e-9),
        "web wake-ups/visitor": sum(v for v, _ in switches) / args.n,
        "web preempted/visitor": sum(i for _, i in switches) / args.n,
        "host busy %": 100 * (host1[0] - host0[0]) / max(1, host1[1] - host0[1]),
        "client CPU %": 100 * client / elapsed,
    }
    if limited:
        row["busiest web node throttled %"] = 100 * max(throttled) / elapsed
        row["web quota used %"] = 100 * sum(cpu) / (elapsed * args.web_cpu * len(webs))
    return {
        **row,
        "backlog": backlog,
        "drained s": drained,
        "all nodes CPU ms/visitor": all_cpu * 1000 / args.n,
        **({"broker CPU ms/visitor": broker_cpu * 1000 / args.n} if broker_cpu is not None else {}),
        **(
            {"database CPU ms/visitor": database_cpu * 1000 / args.n}
            if database_cpu is not None
            else {}
        ),
        "shown twice": shown_twice,
        "leased twice": doubled_in_db,
        "forwarded to owner": forwarding["forwarded"],
        "forwarded per message": forwarding["forwarded"] / max(1, forwarding["batches"]),
        "hellos per group commit": args.n / max(1, batches),
        **closes,
    }


async def _closes(sockets: Sockets, db: Database, webs: list[Any]) -> dict[str, float]:
    """Every visitor leaves at once: the time until the store has closed every tab, and the
    web nodes' and the database's CPU per close meanwhile."""
    count = len(sockets.open)
    cpu0 = sum(cpu_seconds(n.proc.pid) for n in webs)
    database0 = local_postgres_cpu_seconds()
    begin = time.perf_counter()
    await sockets.close_all()
    await _until_none(db, sa.select(sa.func.count()).select_from(t.tabs), DRAIN_WITHIN_S)
    elapsed = time.perf_counter() - begin
    cpu = sum(cpu_seconds(n.proc.pid) for n in webs) - cpu0
    database_cpu = local_postgres_cpu_since(database0)
    return {
        "closes/s": count / elapsed,
        "web CPU ms/close": cpu * 1000 / max(1, count),
        **(
            {"database CPU ms/close": database_cpu * 1000 / max(1, count)}
            if database_cpu is not None
            else {}
        ),
    }


DRAIN_WITHIN_S = 60.0
CONSUMERS_SETTLE_S = 0.5  # after the outbox is empty, for the last deliveries to be handled


async def _forwarding(http: aiohttp.ClientSession, port: int) -> Counter[str]:
    """What this node forwarded to a site's owner (cluster/rabbit.py), from /metrics: the
    requests (`forwarded`) and the messages they went in (`batches`)."""
    counts: Counter[str] = Counter()
    for line in await _metrics(http, port):
        if line.startswith('calltracking_forwarding_total{outcome="'):
            outcome = line.split('"')[1]
            counts[outcome] = int(float(line.split()[-1]))
    return counts


async def _workers_relaying(http: aiohttp.ClientSession, nodes: Nodes) -> None:
    """Wait until the workers node relays the outbox and no web node does. Nodes start
    together, and a web node that finds no workers process yet takes the relay until it sees
    one (store/leadership.py, a second or two): measured then, a web node would be paying for
    the relay during the first seconds of a run."""
    deadline = time.monotonic() + RELAY_SETTLE_S
    while True:
        relaying = {n.name: await _relaying(http, n.port) for n in nodes.nodes}
        if all(on == (name == "workers") for name, on in relaying.items()):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the relay did not settle on the workers node: {relaying}")
        await asyncio.sleep(0.2)


async def _relaying(http: aiohttp.ClientSession, port: int) -> bool:
    lines = await _metrics(http, port)
    return any(line.startswith("calltracking_outbox_relaying 1") for line in lines)


RELAY_SETTLE_S = 20.0


async def _batches(http: aiohttp.ClientSession, port: int) -> float:
    """The group commits this node made so far (`calltracking_decider_batches_total`)."""
    for line in await _metrics(http, port):
        if line.startswith("calltracking_decider_batches_total "):
            return float(line.split()[-1])
    return 0.0


async def _metrics(http: aiohttp.ClientSession, port: int) -> list[str]:
    """The node's /metrics, a line each."""
    async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
        return (await response.text()).splitlines()


async def _drained(db: Database, within_s: float) -> tuple[int, float]:
    """(events unpublished now, seconds until none are), then a pause for the consumers; the
    seconds are `within_s` if the outbox never empties."""
    pending = sa.select(sa.func.count()).where(t.outbox.c.published_at.is_(None))
    backlog, drained = await _until_none(db, pending, within_s)
    await asyncio.sleep(CONSUMERS_SETTLE_S)
    return backlog, drained


async def _until_none(db: Database, count: Any, within_s: float) -> tuple[int, float]:
    """(what `count` counts now, seconds until it counts none, or `within_s` if it never does)."""

    async def left() -> int:
        async with db.read() as conn:
            return int(await conn.scalar(count) or 0)

    begin = time.perf_counter()
    first = still = await left()
    while still and time.perf_counter() - begin < within_s:
        await asyncio.sleep(0.02)
        still = await left()
    return first, time.perf_counter() - begin


async def _numbers_leased_twice(conn: Any) -> int:
    le = t.leases.c
    doubled = (
        sa.select(le.number)
        .where(le.ended_at.is_(None))
        .group_by(le.number)
        .having(sa.func.count() > 1)
        .subquery()
    )
    return int(await conn.scalar(sa.select(sa.func.count()).select_from(doubled)) or 0)


def _in_flight(args: argparse.Namespace, nodes: int) -> int:
    """Handshakes in flight at most for a layout whose sockets go to `nodes` web nodes."""
    opening = int(args.opening)
    return opening * nodes if args.opening_per_node else opening


async def main_async(args: argparse.Namespace) -> None:
    raise_nofile(4 * args.n + 4096)
    runs: dict[int, list[dict[str, float]]] = {n: [] for n in args.nodes}
    if args.cpu_samples:
        args.cpu_samples.mkdir(parents=True, exist_ok=True)
    for repeat in range(args.repeat):
        for web_nodes in args.nodes:
            samples = (
                args.cpu_samples / f"run{repeat + 1}-{web_nodes}" if args.cpu_samples else None
            )
            row = await run_once(args, web_nodes, samples)
            runs[web_nodes].append(row)
            print(f"run {repeat + 1} {web_nodes} web node(s): {row}", flush=True)
    # Counts stay counts in the table (a median of whole numbers of two runs may be x.5).
    medians = [
        {k: int(v) if float(v).is_integer() else v for k, v in median_row(rows).items()}
        for rows in runs.values()
    ]
    base = medians[0]["new visitors/s"]
    headers = [*medians[0].keys(), "x first layout"]
    limit = f", each web node held to {args.web_cpu:g} of a core" if args.web_cpu else ""
    print(f"nodes_bench: median of {args.repeat} runs, -n {args.n}{limit}; {machine()}")
    print(table(headers, [[*m.values(), m["new visitors/s"] / base] for m in medians]))


def main() -> None:
    quiet_logging()
    asyncio.run(main_async(parse_args()))


if __name__ == "__main__":
    main()

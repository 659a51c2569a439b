"""One busy site's new visitors on one `--only web` node against two (PostgreSQL + RabbitMQ).

For each layout (one web node, then two) a fresh database and a fresh RabbitMQ vhost are made,
one site is seeded with a reserve of `-n` + 100 numbers, and the nodes start as `calltracking
serve --only web` children beside one `--only workers` node (the outbox relay to RabbitMQ).
`-n` new visitors then open sockets, at most `--opening` handshakes in flight, spread round
robin over the web nodes' ports; each sends a hello and waits for its number. Reported per
layout: new visitors per second (all opened / time), p50 and p99 from hello to number, the CPU
of the web nodes per new visitor, and double leases: numbers shown to two open sockets at
once, and numbers with more than one open lease in the database (both must be 0). Runs repeat
`--repeat` times with the layouts interleaved; the table shows medians.

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
from typing import Any

import aiohttp
import sqlalchemy as sa
from yarl import URL

from bench.common import (
    cpu_seconds,
    fresh_database,
    machine,
    median_row,
    percentile,
    quiet_logging,
    raise_nofile,
    seed_site,
    table,
)
from bench.soak_nodes import Sockets, free_port, tracker_nodes
from calltracking.store import schema as t
from calltracking.store.db import Database
from calltracking.store.migrate import migrate


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=1000, help="new visitors per run")
    parser.add_argument("--opening", type=int, default=100, help="handshakes in flight at most")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2], help="web nodes per run")
    parser.add_argument("--database-url", required=True, help="a PostgreSQL server")
    parser.add_argument("--amqp-url", required=True, help="a RabbitMQ server (any vhost)")
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


async def run_once(args: argparse.Namespace, web_nodes: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="nodes-bench-") as tmp:
        async with _database(args.database_url) as (db_url, db):
            site = await seed_site(db, pool=args.n + 100)
            with fresh_vhost(args.amqp_url) as amqp_url:
                env = {
                    "CALLTRACKING_DATABASE_URL": db_url,
                    "CALLTRACKING_AMQP_URL": amqp_url,
                    "CALLTRACKING_RECORDINGS_DIR": tmp,
                    "CALLTRACKING_WS_MAX_PER_ADDRESS": "1000000",
                    "CALLTRACKING_TRUSTED_PROXIES": "127.0.0.1",
                }
                layout: list[tuple[str, str | None]] = [
                    (f"web{i + 1}", "web") for i in range(web_nodes)
                ]
                layout.append(("workers", "workers"))
                async with tracker_nodes(env, True, free_port(), layout=layout) as nodes:
                    webs = [n for n in nodes.nodes if n.web]
                    connector = aiohttp.TCPConnector(limit=0)
                    async with aiohttp.ClientSession(connector=connector) as http:
                        sockets = Sockets(
                            site,
                            nodes.web_ports,
                            http,
                            asyncio.Semaphore(args.opening),
                            own_addresses=True,
                        )
                        cpu0 = sum(cpu_seconds(n.proc.pid) for n in webs)
                        begin = time.perf_counter()
                        await sockets.open_many(args.n)
                        elapsed = time.perf_counter() - begin
                        cpu = sum(cpu_seconds(n.proc.pid) for n in webs) - cpu0
                        forwarded = sum([await _forwarded(http, n.port) for n in webs])
                        shown = sockets.leased_numbers()
                        async with db.read() as conn:
                            doubled_in_db = await _numbers_leased_twice(conn)
                        await sockets.close_all()
    shown_twice = sum(1 for count in Counter(shown).values() if count > 1)
    return {
        "web nodes": web_nodes,
        "dynamic": len(shown),
        "failed": sockets.failed,
        "new visitors/s": args.n / elapsed,
        "p50 ms": percentile(sockets.hello_ms, 50),
        "p99 ms": percentile(sockets.hello_ms, 99),
        "web CPU ms/visitor": cpu * 1000 / args.n,
        "shown twice": shown_twice,
        "leased twice": doubled_in_db,
        "forwarded to owner": forwarded,
    }


async def _forwarded(http: aiohttp.ClientSession, port: int) -> int:
    """Requests this node forwarded to a site's owner (cluster/rabbit.py), from /metrics."""
    async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    for line in text.splitlines():
        if line.startswith('calltracking_forwarding_total{outcome="forwarded"}'):
            return int(float(line.split()[-1]))
    return 0


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


async def main_async(args: argparse.Namespace) -> None:
    raise_nofile(4 * args.n + 4096)
    runs: dict[int, list[dict[str, float]]] = {n: [] for n in args.nodes}
    for repeat in range(args.repeat):
        for web_nodes in args.nodes:
            row = await run_once(args, web_nodes)
            runs[web_nodes].append(row)
            print(f"run {repeat + 1} {web_nodes} web node(s): {row}", flush=True)
    # Counts stay counts in the table (a median of whole numbers of two runs may be x.5).
    medians = [
        {k: int(v) if float(v).is_integer() else v for k, v in median_row(rows).items()}
        for rows in runs.values()
    ]
    base = medians[0]["new visitors/s"]
    headers = [*medians[0].keys(), "x first layout"]
    print(f"nodes_bench: median of {args.repeat} runs, -n {args.n}; {machine()}")
    print(table(headers, [[*m.values(), m["new visitors/s"] / base] for m in medians]))


def main() -> None:
    quiet_logging()
    asyncio.run(main_async(parse_args()))


if __name__ == "__main__":
    main()

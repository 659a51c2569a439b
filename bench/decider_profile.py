"""Where a new visitor's hello spends its time inside the process, without sockets.

Starts the tracker's services on a fresh SQLite file (or, with `--database-url`, a fresh
database this bench makes on that PostgreSQL server and drops after), seeds a site whose pool
may grow to `--pool` numbers (default `-n`) from a reserve of as many, and sends `-n` hellos of
new visitors from `--concurrency` tasks straight to the decider (`services.visitors.hello`),
as the websocket handler does. Prints hellos per second and CPU per hello (the median of
`--repeat` runs, each on a fresh database); with `--profile FILE`, writes a cProfile of the
first run and prints its top functions by cumulative and by own time.

`--close` then closes every tab, as many at once, and reports closes per second and CPU per
close (a tab's close ends its lease: the group commits of a site whose visitors come and go).

`--pool 200 20000` with `-n 200` shows whether a new visitor's cost depends on the size of the
pool it is drawn from: the sizes take turns, run by run, and the table has a row for each.
`--grown` starts with the pool grown to `--pool` (a site that has been running: no hello grows
it from the reserve); two `--concurrency` values then give the cost of a group commit apart
from a hello's (docs/benchmarks.md). `--history N` first stores N visitors who came and left
before (a visitor, a visit and an ended lease each, all with random ids, as a tracker stored
them before store/ids.py): whether it depends on how many visitors the database already holds.
The heap is settled after seeding, as `serve` settles it once it listens (calltracking/heap.py).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.common import DESKTOP_UA, T0, cpu_seconds, fresh_database, median, seed_site, table
from calltracking.config import Config
from calltracking.heap import settle_after_startup
from calltracking.serve import running
from calltracking.store import schema as t
from calltracking.store.bulk_insert import insert_rows
from calltracking.store.db import Database
from calltracking.store.ids import new_id
from calltracking.store.sites import Site
from calltracking.store.visitors import Hello, Welcome

TOP = 35
HISTORY_CHUNK = 5000


async def store_history(db: Database, site: Site, visitors: int) -> None:
    """`visitors` earlier visitors of `site`: each a visitor row, a visit and a lease of one of
    the reserve's numbers that ended a day before T0 (nothing the deciders hold in memory)."""
    async with db.read() as conn:
        numbers = list((await conn.execute(sa.select(t.numbers.c.e164).limit(1000))).scalars())
    left = T0 - timedelta(days=1)
    for start in range(0, visitors, HISTORY_CHUNK):
        rows: dict[sa.Table, list[dict[str, Any]]] = {t.visitors: [], t.visits: [], t.leases: []}
        for i in range(start, min(visitors, start + HISTORY_CHUNK)):
            came = left - timedelta(seconds=visitors - i)
            visitor, visit = new_id(), new_id()
            rows[t.visitors].append(
                {
                    "id": visitor,
                    "site_id": site.id,
                    "created_at": came,
                    "last_seen_at": came,
                    "last_activity_at": came,
                    "wants_number": False,
                    "bot": False,
                }
            )
            rows[t.visits].append(
                {
                    "id": visit,
                    "visitor_id": visitor,
                    "site_id": site.id,
                    "started_at": came,
                    "last_seen_at": came,
                    "source": "history",
                    "medium": "bench",
                    "tracked": True,
                    "got_number": True,
                }
            )
            rows[t.leases].append(
                {
                    "id": new_id(),
                    "site_id": site.id,
                    "number": numbers[i % len(numbers)],
                    "visitor_id": visitor,
                    "visit_id": visit,
                    "assigned_at": came,
                    "ended_at": came + timedelta(seconds=30),
                    "end_reason": "closed",
                }
            )
        async with db.write() as conn:
            for table, chunk in rows.items():
                await insert_rows(conn, table, chunk)


async def run(
    n: int,
    pool: int,
    concurrency: int,
    database_url: str | None,
    profile: str | None,
    history: int = 0,
    grown: bool = False,
    close: bool = False,
) -> tuple[float, ...]:
    """(hellos per second, ms of CPU per hello) of one run, then with `close` (closes per
    second, ms of CPU per close)."""
    with tempfile.TemporaryDirectory(prefix="bench-decider-") as tmp:
        async with fresh_database(database_url or "") as fresh:
            url = fresh or f"sqlite+aiosqlite:///{Path(tmp) / 'ct.db'}"
            return await _run_on(
                url, Path(tmp), n, pool, concurrency, profile, history, grown, close
            )


async def _run_on(
    url: str,
    tmp: Path,
    n: int,
    pool: int,
    concurrency: int,
    profile: str | None,
    history: int,
    grown: bool,
    close: bool,
) -> tuple[float, ...]:
    config = Config(database_url=url, recordings_dir=tmp, http_port=0)
    async with running(config, ["web"]) as state:
        services = state.services
        site = await seed_site(services.db, pool, grown=grown)
        await store_history(services.db, site, history)
        # As `calltracking serve` does once it listens: without it a full collection over
        # the seeded reserve's objects (50-60 ms at 20,000 numbers, the default thresholds)
        # fell inside some runs and not others, and looked like a cost of the pool's size.
        settle_after_startup()
        queue = list(range(n))
        welcomes: list[Welcome] = []

        async def visitor_task() -> None:
            while queue:
                i = queue.pop()
                hello = Hello(
                    url="https://shop.example/?utm_source=bench",
                    referrer="",
                    user_agent=DESKTOP_UA,
                    address=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
                )
                welcomes.append(await services.visitors.hello(site, hello, services.clock()))

        profiler = cProfile.Profile() if profile else None
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        if profiler:
            profiler.enable()
        await asyncio.gather(*(visitor_task() for _ in range(concurrency)))
        if profiler:
            profiler.disable()
        wall, cpu = time.perf_counter() - wall0, cpu_seconds() - cpu0
        print(
            f"decider_profile: {n} new visitors, pool up to {pool}, "
            f"{history:,} earlier visitors, in {wall:.2f} s: "
            f"{n / wall:.0f}/s, {1000 * cpu / n:.3f} ms of CPU each",
            flush=True,
        )
        if profiler and profile:
            profiler.dump_stats(profile)
            stats = pstats.Stats(profile)
            stats.sort_stats("cumulative").print_stats(TOP)
            stats.sort_stats("tottime").print_stats(TOP)
        if not close:
            return n / wall, 1000 * cpu / n

        async def closer_task() -> None:
            while welcomes:
                w = welcomes.pop()
                await services.visitors.tab_closed(site, w.visitor_id, w.tab_id, services.clock())

        cpu1, wall1 = cpu_seconds(), time.perf_counter()
        await asyncio.gather(*(closer_task() for _ in range(concurrency)))
        close_wall, close_cpu = time.perf_counter() - wall1, cpu_seconds() - cpu1
        print(
            f"decider_profile: {n} tabs closed in {close_wall:.2f} s: {n / close_wall:.0f}/s, "
            f"{1000 * close_cpu / n:.3f} ms of CPU each",
            flush=True,
        )
        return n / wall, 1000 * cpu / n, n / close_wall, 1000 * close_cpu / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument(
        "--pool",
        type=int,
        nargs="+",
        default=[0],
        help="the pool's size (default: -n); several sizes take turns, run by run",
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server (any database)")
    parser.add_argument("--profile", default=None, help="write a cProfile to FILE")
    parser.add_argument(
        "--history", type=int, default=0, help="visitors who came and left before (stored first)"
    )
    parser.add_argument(
        "--grown", action="store_true", help="the pool already grown to --pool (no growth)"
    )
    parser.add_argument(
        "--close", action="store_true", help="then close every tab, as many at once (timed too)"
    )
    args = parser.parse_args()
    pools = [pool or args.n for pool in args.pool]
    if min(pools) < args.n:
        parser.error("--pool must hold -n visitors")
    # Pools take turns within each repeat, so that the host's drift falls on each alike.
    runs: dict[int, list[tuple[float, ...]]] = {pool: [] for pool in pools}
    for i in range(args.repeat):
        for pool in pools:
            runs[pool].append(
                asyncio.run(
                    run(
                        args.n,
                        pool,
                        args.concurrency,
                        args.database_url,
                        args.profile if i == 0 and pool == pools[0] else None,
                        args.history,
                        args.grown,
                        args.close,
                    )
                )
            )
    headers = ["pool", "new visitors", "earlier visitors", "concurrency", "hellos/s"]
    headers += ["CPU ms/hello"]
    if args.close:
        headers += ["closes/s", "CPU ms/close"]
    if len(pools) > 1:
        headers += ["CPU x first pool"]
    rows: list[list[object]] = []
    first_cpu = median([r[1] for r in runs[pools[0]]])
    for pool, results in runs.items():
        rate, cpu_ms = median([r[0] for r in results]), median([r[1] for r in results])
        print(
            f"decider_profile: pool {pool}, median of {len(results)}: {rate:.0f}/s, "
            f"{cpu_ms:.3f} ms of CPU each"
        )
        row: list[object] = [pool, args.n, f"{args.history:,}", args.concurrency, rate, cpu_ms]
        if args.close:
            row += [median([r[2] for r in results]), median([r[3] for r in results])]
        if len(pools) > 1:
            row += [cpu_ms / first_cpu]
        rows.append(row)
    print(table(headers, rows))


if __name__ == "__main__":
    main()

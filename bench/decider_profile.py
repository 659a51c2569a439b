"""Where a new visitor's hello spends its time inside the process, without sockets.

Starts the tracker's services on a fresh SQLite file (or `--database-url` PostgreSQL, an empty
database), seeds a site with a pool of `-n` numbers, and sends `-n` hellos of new visitors from
`--concurrency` tasks straight to the decider (`services.visitors.hello`), as the websocket
handler does. Prints hellos per second and, with `--profile FILE`, writes a cProfile of the run
and prints its top functions by cumulative and by own time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

from bench.common import DESKTOP_UA, cpu_seconds, seed_site
from calltracking.config import Config
from calltracking.serve import running
from calltracking.store.visitors import Hello

TOP = 35


async def run(n: int, concurrency: int, database_url: str | None, profile: str | None) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-decider-") as tmp:
        url = database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'ct.db'}"
        config = Config(database_url=url, recordings_dir=Path(tmp), http_port=0)
        async with running(config, ["web"]) as state:
            services = state.services
            site = await seed_site(services.db, n)
            queue = list(range(n))

            async def visitor_task() -> None:
                while queue:
                    i = queue.pop()
                    hello = Hello(
                        url="https://shop.example/?utm_source=bench",
                        referrer="",
                        user_agent=DESKTOP_UA,
                        address=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
                    )
                    await services.visitors.hello(site, hello, services.clock())

            profiler = cProfile.Profile() if profile else None
            cpu0, wall0 = cpu_seconds(), time.perf_counter()
            if profiler:
                profiler.enable()
            await asyncio.gather(*(visitor_task() for _ in range(concurrency)))
            if profiler:
                profiler.disable()
            wall, cpu = time.perf_counter() - wall0, cpu_seconds() - cpu0
            print(
                f"decider_profile: {n} new visitors in {wall:.2f} s: {n / wall:.0f}/s, "
                f"{1000 * cpu / n:.3f} ms of CPU each"
            )
            if profiler and profile:
                profiler.dump_stats(profile)
                stats = pstats.Stats(profile)
                stats.sort_stats("cumulative").print_stats(TOP)
                stats.sort_stats("tottime").print_stats(TOP)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--profile", default=None, help="write a cProfile to FILE")
    args = parser.parse_args()
    asyncio.run(run(args.n, args.concurrency, args.database_url, args.profile))


if __name__ == "__main__":
    main()

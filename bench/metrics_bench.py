"""What a `/metrics` scrape costs the node that answers it, by the size of the pools.

A web node reads the database-wide figures (pools by state, outbox, export queues) at every
scrape, on the loop that also serves the visitors' sockets and, in an all-in-one `serve`, the
FastAGI dialogues. For each pool size a fresh database gets one site whose pool is grown to
that size, with every `--leased`-th number leased and every `--held`-th released moments ago.
Then `Metrics.render` runs `--repeat` times; reported: the median of the process's CPU per
scrape and of its wall time (the database's own time included), and the states counted.

    python -m bench.metrics_bench --sizes 2000 20000 \\
        --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from bench.common import fresh_database, machine, quiet_logging, seed_site, table
from calltracking.metrics import Metrics
from calltracking.store import schema as t
from calltracking.store.db import Database
from calltracking.store.migrate import migrate


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--leased", type=int, default=2, help="every Nth number leased [2]")
    parser.add_argument("--held", type=int, default=5, help="every Nth number held [5]")
    parser.add_argument("--database-url", default="", help="PostgreSQL; default: SQLite")
    return parser.parse_args(argv)


async def populate(db: Database, size: int, leased: int, held: int) -> None:
    site = await seed_site(db, size, grown=True)
    now = datetime.now(UTC)
    async with db.write() as conn:
        rows = await conn.execute(
            sa.select(t.numbers.c.e164).where(t.numbers.c.site_id == site.id).order_by("e164")
        )
        pool = [row.e164 for row in rows]
        visitors, leases, releases = [], [], []
        for n, e164 in enumerate(pool):
            visitor = f"{n:032x}"
            visitors.append(
                {"id": visitor, "site_id": site.id, "created_at": now, "last_seen_at": now,
                 "last_activity_at": now, "wants_number": False, "bot": False}
            )  # fmt: skip
            if n % leased == 0:
                leases.append(
                    {"id": f"{n:032x}", "site_id": site.id, "number": e164,
                     "visitor_id": visitor, "assigned_at": now}
                )  # fmt: skip
            elif n % held == 0:
                releases.append(e164)
        await conn.execute(t.visitors.insert(), visitors)
        if leases:
            await conn.execute(t.leases.insert(), leases)
        if releases:
            await conn.execute(
                t.numbers.update()
                .where(t.numbers.c.e164.in_(releases))
                .values(
                    last_released_at=now - timedelta(seconds=1),
                    last_visitor_id=sa.literal(f"{0:032x}"),
                )
            )


async def measure(url: str, size: int, args: argparse.Namespace) -> dict[str, object]:
    db = Database(url)
    try:
        await migrate(db)
        await populate(db, size, args.leased, args.held)
        metrics = Metrics()
        cpu, wall = [], []
        for _ in range(args.repeat):
            c0, w0 = time.process_time(), time.perf_counter()
            text = await metrics.render(db, datetime.now(UTC))
            cpu.append((time.process_time() - c0) * 1000)
            wall.append((time.perf_counter() - w0) * 1000)
        states = {
            line.split('state="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
            for line in text.decode().splitlines()
            if line.startswith("calltracking_pool_numbers{")
        }
        return {
            "pool": size,
            "CPU ms per scrape": statistics.median(cpu),
            "wall ms per scrape": statistics.median(wall),
            **{f"{state}": int(states.get(state, 0)) for state in ("free", "leased", "held")},
        }
    finally:
        await db.close()


async def main_async(args: argparse.Namespace) -> str:
    rows = []
    for size in args.sizes:
        if args.database_url:
            async with fresh_database(args.database_url) as url:
                rows.append(await measure(url, size, args))
        else:
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite+aiosqlite:///{Path(tmp) / 'metrics.db'}"
                rows.append(await measure(url, size, args))
    headers = list(rows[0])
    store = "PostgreSQL" if args.database_url else "SQLite"
    return f"metrics_bench: {store}, {args.repeat} scrapes each; {machine()}\n\n" + table(
        headers, [[row[h] for h in headers] for row in rows]
    )


def main() -> None:
    quiet_logging()
    print(asyncio.run(main_async(parse_args())))


if __name__ == "__main__":
    main()

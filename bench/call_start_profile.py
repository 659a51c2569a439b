"""CPU of one batch of FastAGI call starts as the caller's history grows, without sockets.

On a fresh SQLite file (the inline path, store/sqlite_inline.py), or with `--database-url` a
fresh database on that PostgreSQL server, a seeded site; then for each `--history`
(cumulative), that many earlier calls of one caller are stored first (batches of 256), and
`--batches` batches of `--size` call starts of the same caller are timed one by one: this
process's CPU and the wall time from the first start to the last answer (on PostgreSQL the
server's own work shows in the wall time only). Prints the medians per batch as a table
(`bench.pairs` compares two revisions with it). A batch whose cost grows with the history
reads, or writes into, something that grows with it.

    python -m bench.call_start_profile --history 0 2000 10000 [--database-url postgresql+asyncpg://...]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import fresh_database, machine, median, quiet_logging, seed_site, table
from calltracking.core.records import CallKey
from calltracking.store.call_batches import CallStartBatcher
from calltracking.store.calls import SqlCallRecorder
from calltracking.store.db import Database
from calltracking.store.migrate import migrate

DID = "+74950009001"  # the seeded site's `initial` number: the calls are the site's
CALLER = "+79161234567"
AT = datetime(2026, 11, 30, 12, tzinfo=UTC)
FILL = 256


async def run(
    histories: list[int], batches: int, size: int, server_url: str = ""
) -> list[tuple[float, float]]:
    """(CPU ms, wall ms) per batch, the medians, for each history."""
    with tempfile.TemporaryDirectory(prefix="call-starts-") as tmp:
        async with fresh_database(server_url) as url:
            return await _measure(
                url or f"sqlite+aiosqlite:///{Path(tmp) / 'ct.db'}", histories, batches, size
            )


async def _measure(
    url: str, histories: list[int], batches: int, size: int
) -> list[tuple[float, float]]:
    db = Database(url)
    await migrate(db)
    await seed_site(db, 10)
    batcher = CallStartBatcher(db, SqlCallRecorder(db))
    stored = 0

    async def starts(prefix: str, count: int) -> None:
        nonlocal stored
        await asyncio.gather(
            *(
                batcher.start_call(
                    CallKey("pbx", f"{prefix}{stored + n}"),
                    DID,
                    CALLER,
                    AT + timedelta(seconds=stored + n),
                )
                for n in range(count)
            )
        )
        stored += count

    medians = []
    try:
        for history in histories:
            while stored < history:
                await starts("h", FILL)
            cpu_ms, wall_ms = [], []
            for _ in range(batches):
                cpu, wall = time.process_time(), time.perf_counter()
                await starts("m", size)
                cpu_ms.append(1000 * (time.process_time() - cpu))
                wall_ms.append(1000 * (time.perf_counter() - wall))
            medians.append((median(cpu_ms), median(wall_ms)))
    finally:
        await batcher.close()
        await db.close()
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--history", type=int, nargs="+", default=[0, 2000, 10000])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--database-url", default="", help="a PostgreSQL server (any database)")
    args = parser.parse_args()
    quiet_logging()
    histories = sorted(args.history)
    medians = asyncio.run(run(histories, args.batches, args.size, args.database_url))
    where = "PostgreSQL" if args.database_url else "SQLite"
    print(f"call_start_profile: median of {args.batches} batches, {where}; {machine()}")
    print(
        table(
            [
                "calls stored before",
                f"CPU ms per batch of {args.size}",
                f"wall ms per batch of {args.size}",
            ],
            [
                [f"{history:,}", cpu_ms, wall_ms]
                for history, (cpu_ms, wall_ms) in zip(histories, medians, strict=True)
            ],
        )
    )


if __name__ == "__main__":
    main()

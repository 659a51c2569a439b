"""CPU of one batch of FastAGI call starts as the caller's history grows, without sockets.

On a fresh SQLite file (the inline path, store/sqlite_inline.py), a seeded site; then for each
`--history` (cumulative), that many earlier calls of one caller are stored first (batches of
256), and `--batches` batches of `--size` call starts of the same caller are timed one by one
(this process's CPU from the first start to the last answer). Prints the median per batch, as
a table (`bench.pairs` compares two revisions with it).
A batch whose cost grows with the history reads something that grows with it.

    python -m bench.call_start_profile --history 0 2000 10000
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import machine, median, quiet_logging, seed_site, table
from calltracking.core.records import CallKey
from calltracking.store.call_batches import CallStartBatcher
from calltracking.store.calls import SqlCallRecorder
from calltracking.store.db import Database
from calltracking.store.migrate import migrate

DID = "+74950009001"  # the seeded site's `initial` number: the calls are the site's
CALLER = "+79161234567"
AT = datetime(2026, 11, 30, 12, tzinfo=UTC)
FILL = 256


async def run(histories: list[int], batches: int, size: int) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="call-starts-") as tmp:
        db = Database(f"sqlite+aiosqlite:///{Path(tmp) / 'ct.db'}")
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
        for history in histories:
            while stored < history:
                await starts("h", FILL)
            samples = []
            for _ in range(batches):
                cpu = time.process_time()
                await starts("m", size)
                samples.append(1000 * (time.process_time() - cpu))
            medians.append(median(samples))
        await batcher.close()
        await db.close()
        return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--history", type=int, nargs="+", default=[0, 2000, 10000])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--size", type=int, default=16)
    args = parser.parse_args()
    quiet_logging()
    histories = sorted(args.history)
    medians = asyncio.run(run(histories, args.batches, args.size))
    print(f"call_start_profile: median of {args.batches} batches; {machine()}")
    print(
        table(
            ["calls stored before", f"CPU ms per batch of {args.size}"],
            [[f"{history:,}", ms] for history, ms in zip(histories, medians, strict=True)],
        )
    )


if __name__ == "__main__":
    main()

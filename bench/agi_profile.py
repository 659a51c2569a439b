"""Profile one FastAGI process in-process: `AgiServer` and the bench's Asterisk side in one loop,
under cProfile, on a fresh SQLite file; prints the top functions by cumulative time.

    python -m bench.agi_profile --requests 2000 --concurrency 32 [--batched]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import itertools
import pstats
import tempfile
import time
from pathlib import Path

from agi.server import AgiServer
from bench.agi_bench import EPOCH, dialogue
from bench.common import LOOPBACK, quiet_logging
from calltracking.ports import CallRecorder
from calltracking.store.calls import SqlCallRecorder
from calltracking.store.db import Database
from calltracking.store.migrate import migrate


async def run(requests: int, concurrency: int, batched: bool, profile: cProfile.Profile) -> None:
    with tempfile.TemporaryDirectory(prefix="agi-profile-") as tmp:
        db = Database(f"sqlite+aiosqlite:///{Path(tmp) / 'ct.db'}")
        await migrate(db)
        recorder: CallRecorder = SqlCallRecorder(db)
        batcher = None
        if batched:
            from calltracking.store.call_batches import CallStartBatcher

            batcher = CallStartBatcher(db, SqlCallRecorder(db))
            recorder = batcher
        server = AgiServer(recorder, "pbx-profile", "7", LOOPBACK, 0)
        await server.start()
        ids = itertools.count()
        kinds: dict[str, int] = {}

        async def worker() -> None:
            while (n := next(ids)) < requests:
                try:
                    kind = await dialogue(server.port, f"{EPOCH}.{n}")
                except OSError:
                    kind = "reset"
                kinds[kind] = kinds.get(kind, 0) + 1

        begin = time.perf_counter()
        profile.enable()
        async with asyncio.TaskGroup() as tg:
            for _ in range(concurrency):
                tg.create_task(worker())
        profile.disable()
        elapsed = time.perf_counter() - begin
        await server.stop()
        if batcher is not None:
            await batcher.close()
        await db.close()
        print(f"{sum(kinds.values())} dialogues in {elapsed:.2f}s: {kinds}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batched", action="store_true")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    quiet_logging()
    profile = cProfile.Profile()
    asyncio.run(run(args.requests, args.concurrency, args.batched, profile))
    pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()

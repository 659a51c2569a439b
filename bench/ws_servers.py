"""The two websocket servers `bench.ws_bench` measures, each run as its own child process.

- `tracker`: the real tracker's web part (`calltracking.serve.running`) on a fresh SQLite file,
  with one seeded site whose pool holds `--pool` numbers, loopback trusted as a proxy so that
  each socket's `X-Forwarded-For` is its own visitor's address.
  Ready line: `{"port", "site", "pid"}`.
- `echo`: a bare aiohttp websocket server that sends every text frame back. Ready line:
  `{"port", "pid"}`.
Both serve until stdin closes or `--max-seconds` pass. With `--trace`, the tracker runs under
tracemalloc and answers each `diff` line on stdin with the allocations grown since it was ready,
by line and by traceback, and the collector's objects grown by type, on stderr (to find what
each held socket costs). With `$BENCH_PROFILE` set to a file name, the tracker runs under
cProfile from its ready line on and writes the profile there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import os
import sys
import tempfile
import tracemalloc
from collections import Counter
from pathlib import Path

from aiohttp import WSMsgType, web

from bench.common import (
    LOOPBACK,
    announce,
    quiet_logging,
    seed_site,
    serve_until_stdin_closes,
    stdin_lines,
    until_stdin_closes,
)
from calltracking.config import Config
from calltracking.heap import settle_after_startup
from calltracking.serve import running

MAX_SOCKETS = 100_000
TRACE_TOP = 40
TRACE_FRAMES = 6


async def serve_tracker(
    pool: int, max_s: float, trace: bool = False, database_url: str = ""
) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-ws-") as tmp:
        config = Config(
            database_url=database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'ct.db'}",
            http_host=LOOPBACK,
            http_port=0,
            recordings_dir=Path(tmp),
            ws_max_per_address=MAX_SOCKETS,
            # Each bench socket names its own client address in X-Forwarded-For, as visitors
            # behind a proxy do, so the per-address caps and hello rate see distinct people.
            trusted_proxies=(LOOPBACK,),
        )
        async with running(config, ["web"]) as state:
            site = await seed_site(state.services.db, pool)
            if trace:
                tracemalloc.start(TRACE_FRAMES)
                baseline = tracemalloc.take_snapshot()
            settle_after_startup()  # as `calltracking serve` does
            census = _census() if trace else Counter[str]()
            profile_to = os.environ.get("BENCH_PROFILE")
            profiler = cProfile.Profile() if profile_to else None
            announce({"port": state.http_port, "site": site.key, "pid": os.getpid()})
            if profiler:
                profiler.enable()
            try:
                if trace:
                    await _answer_diffs(baseline, census, max_s)
                else:
                    await until_stdin_closes(max_s)
            finally:
                if profiler and profile_to:
                    profiler.disable()
                    profiler.dump_stats(profile_to)


def _census() -> Counter[str]:
    """Objects the collector tracks, by type (the frozen startup heap is not among them)."""
    return Counter(type(o).__qualname__ for o in gc.get_objects())


async def _answer_diffs(baseline: tracemalloc.Snapshot, census: Counter[str], max_s: float) -> None:
    reader = await stdin_lines()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max_s):
            while line := await reader.readline():
                if line.strip() != b"diff":
                    continue
                snapshot = tracemalloc.take_snapshot()
                stats = snapshot.compare_to(baseline, "lineno")
                grown_bytes = sum(stat.size_diff for stat in stats)
                print(f"traced growth: {grown_bytes / 1024:.0f} KiB", file=sys.stderr)
                for stat in stats[:TRACE_TOP]:
                    print(stat, file=sys.stderr)
                print("-- by traceback", file=sys.stderr)
                for stat in snapshot.compare_to(baseline, "traceback")[:TRACE_TOP]:
                    print(stat, file=sys.stderr)
                    for frame in stat.traceback.format(most_recent_first=True):
                        print("   ", frame.strip(), file=sys.stderr)
                print("-- objects grown, by type", file=sys.stderr)
                grown = _census()
                grown.subtract(census)
                for name, count in grown.most_common(TRACE_TOP):
                    print(f"{count:8} {name}", file=sys.stderr)
                sys.stderr.flush()
                announce({"traced": len(stats)})


async def _echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=4096)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            await ws.send_str(msg.data)
    return ws


async def serve_echo(max_s: float) -> None:
    app = web.Application()
    app.router.add_get("/ws", _echo)
    await serve_until_stdin_closes(app, max_s, shutdown_timeout=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=("tracker", "echo"))
    parser.add_argument("--pool", type=int, default=2000)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--trace", action="store_true", help="tracemalloc; `diff` on stdin")
    parser.add_argument("--database-url", default="", help="an empty PostgreSQL database")
    args = parser.parse_args()
    quiet_logging()
    if args.role == "tracker":
        asyncio.run(serve_tracker(args.pool, args.max_seconds, args.trace, args.database_url))
    else:
        asyncio.run(serve_echo(args.max_seconds))


if __name__ == "__main__":
    main()

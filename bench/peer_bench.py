"""The tracker beside zar's shape, one run: a minimal Redis-backed pool (bench/pool_peer.py) always,
and zar itself (bench/zar_peer.py) when given a checkout (`--zar`) and its venv (`--zar-python`).

For each server, fresh, with a pool of N numbers:
1. new visitors: N visitors arrive, at most `--opening` in flight. Tracker: a websocket hello
   until its `number` frame (the socket stays open). Pool: one `GET /number`. zar: its JS
   client's first call, `POST /api/v2/page` (records the page, leases a number).
   Rate = N / time to serve them all; server CPU per new visitor = CPU time of the server
   processes over that phase / N.
2. held visitors: for `--hold` seconds the N visitors stay. Tracker: sockets open, idle (the
   server pings each every 25 s). Pool and zar: each visitor renews every 30 s, as zar's page
   does (requests spread evenly; zar: `POST /api/v2/number_pool` with its cookies).
   CPU per held visitor-hour = CPU seconds / (N x hours held).
CPU time is utime + stime (all threads) from /proc/<pid>/stat of: the tracker's process; the
pool's process and its throwaway redis-server; zar's gunicorn master and workers, its throwaway
redis-server and the local MariaDB/MySQL server (shared, idle at ~0.001 CPU s/s here). All run on
the same machine, one after the other, with the client in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import LOOPBACK, child, cpu_seconds, machine, percentile, raise_nofile, table
from bench.redis_child import redis_server
from bench.ws_bench import Result, hello_frame, open_one
from bench.zar_peer import DEFAULT_DB_URL, Visitor, arrive, renew, zar_server

RENEW_S = 30.0


async def seed_pool(port: int, n: int) -> None:
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    numbers = [f"+7495111{i:04d}" for i in range(1, n + 1)]
    args = ["SADD", "pool", *numbers]
    writer.write(f"*{len(args)}\r\n".encode())
    for arg in args:
        writer.write(f"${len(arg)}\r\n{arg}\r\n".encode())
    await writer.drain()
    await reader.readline()
    writer.close()


def cpu(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


async def timed(pids: list[int], work: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of `pids`) spent in `work`."""
    cpu0, wall0 = cpu(pids), time.perf_counter()
    await work()
    return time.perf_counter() - wall0, cpu(pids) - cpu0


async def renew_spread(
    n: int, hold_s: float, renew_one: Callable[[int], Coroutine[Any, Any, None]]
) -> None:
    """Each of the n visitors renews every RENEW_S, the renewals spread evenly over time."""
    gap = RENEW_S / n
    begin = time.perf_counter()
    tasks: list[asyncio.Task[None]] = []
    for k in range(int(hold_s / gap)):
        await asyncio.sleep(max(0.0, begin + k * gap - time.perf_counter()))
        tasks.append(asyncio.create_task(renew_one(k % n)))
    await asyncio.gather(*tasks)


async def measure_peer(n: int, opening: int, hold_s: float) -> dict[str, float]:
    async with redis_server() as (redis_port, redis_pid):
        await seed_pool(redis_port, n)
        async with child("bench.pool_peer", "--redis-port", str(redis_port)) as proc:
            pids = [proc.pid, redis_pid]
            url = f"http://{LOOPBACK}:{proc.ready['port']}/number"
            latencies: list[float] = []
            kinds: Counter[str] = Counter()
            connector = aiohttp.TCPConnector(limit=opening)
            async with aiohttp.ClientSession(connector=connector) as http:

                async def lease(visitor: int, record: bool) -> None:
                    start = time.perf_counter()
                    async with http.get(url, params={"visitor": f"v{visitor}"}) as response:
                        body = await response.json()
                    if record:
                        latencies.append((time.perf_counter() - start) * 1000)
                        kinds[str(body.get("kind"))] += 1

                async def arrive_all() -> None:
                    await asyncio.gather(*(lease(i, True) for i in range(n)))

                async def hold() -> None:
                    await renew_spread(n, hold_s, lambda i: lease(i, False))

                open_s, open_cpu = await timed(pids, arrive_all)
                held_s, held_cpu = await timed(pids, hold)
    return _row(n, kinds, latencies, open_s, open_cpu, held_s, held_cpu)


async def measure_zar(
    n: int,
    opening: int,
    hold_s: float,
    checkout: Path,
    python: Path,
    db_url: str,
    workers: int | None,
) -> dict[str, float]:
    """zar itself (bench/zar_peer.py): its gunicorn master and workers, Redis and MySQL server."""
    numbers = [f"+7495111{i:04d}" for i in range(1, n + 1)]
    async with zar_server(checkout, python, numbers, db_url, workers) as zar:
        latencies: list[float] = []
        kinds: Counter[str] = Counter()
        renewals: Counter[str] = Counter()
        visitors = [Visitor(i) for i in range(n)]
        connector = aiohttp.TCPConnector(limit=opening)
        jar = aiohttp.DummyCookieJar()  # each visitor carries its own cookies, as its browser
        async with aiohttp.ClientSession(connector=connector, cookie_jar=jar) as http:

            async def arrive_one(visitor: Visitor) -> None:
                start = time.perf_counter()
                try:
                    kinds[await arrive(http, zar.url, visitor)] += 1
                except aiohttp.ClientError as exc:
                    kinds[type(exc).__name__] += 1
                latencies.append((time.perf_counter() - start) * 1000)

            async def renew_one(i: int) -> None:
                try:
                    renewals[await renew(http, zar.url, visitors[i])] += 1
                except aiohttp.ClientError as exc:
                    renewals[type(exc).__name__] += 1

            async def arrive_all() -> None:
                await asyncio.gather(*(arrive_one(v) for v in visitors))

            async def hold() -> None:
                await renew_spread(n, hold_s, renew_one)

            before = {part: cpu(pids) for part, pids in zar.parts.items()}
            open_s, open_cpu = await timed(zar.pids, arrive_all)
            middle = {part: cpu(pids) for part, pids in zar.parts.items()}
            held_s, held_cpu = await timed(zar.pids, hold)
            after = {part: cpu(pids) for part, pids in zar.parts.items()}
        split = ", ".join(
            f"{part} {middle[part] - before[part]:.2f} + {after[part] - middle[part]:.2f}"
            for part in zar.parts
        )
        print(
            f"zar: {zar.workers} workers; pids counted {zar.parts}; new visitors {dict(kinds)}; "
            f"renewals {dict(renewals)}; CPU s arriving + held: {split}",
            flush=True,
        )
    return _row(n, kinds, latencies, open_s, open_cpu, held_s, held_cpu)


async def measure_tracker(n: int, opening: int, hold_s: float) -> dict[str, float]:
    async with child("bench.ws_servers", "tracker", "--pool", str(n)) as proc:
        pids = [proc.pid]
        url = f"http://{LOOPBACK}:{proc.ready['port']}/ws"
        hello = hello_frame(str(proc.ready.get("site", "bench")))
        result = Result("tracker", n)
        sockets: list[aiohttp.ClientWebSocketResponse] = []
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            gate = asyncio.Semaphore(opening)

            async def arrive() -> None:
                await asyncio.gather(
                    *(open_one(http, url, hello, False, gate, result, sockets, i) for i in range(n))
                )

            try:
                open_s, open_cpu = await timed(pids, arrive)
                held_s, held_cpu = await timed(pids, lambda: asyncio.sleep(hold_s))
            finally:
                await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return _row(n, result.kinds, result.latencies_ms, open_s, open_cpu, held_s, held_cpu)


def _row(
    n: int,
    kinds: Counter[str],
    latencies: list[float],
    open_s: float,
    open_cpu: float,
    held_s: float,
    held_cpu: float,
) -> dict[str, float]:
    return {
        "dynamic": float(kinds.get("dynamic", 0)),
        "rate": n / open_s,
        "p99": percentile(latencies, 99),
        "cpu_ms_per_new": open_cpu / n * 1000,
        "cpu_s_per_visitor_hour": held_cpu / (n * held_s / 3600),
    }


async def main_async(
    n: int,
    opening: int,
    hold_s: float,
    zar: Path | None,
    zar_python: Path | None,
    db_url: str,
    zar_workers: int | None,
) -> None:
    raise_nofile(4 * n + 1024)
    servers: list[tuple[str, Callable[[], Awaitable[dict[str, float]]]]] = []
    if zar is not None and zar_python is not None:
        servers.append(
            ("zar", lambda: measure_zar(n, opening, hold_s, zar, zar_python, db_url, zar_workers))
        )
    servers.append(("redis pool", lambda: measure_peer(n, opening, hold_s)))
    servers.append(("tracker", lambda: measure_tracker(n, opening, hold_s)))
    rows = []
    for name, measure in servers:
        row = await measure()
        print(f"{name}: {row}", flush=True)
        rows.append(
            [
                name,
                f"{row['dynamic']:.0f}",
                row["rate"],
                row["p99"],
                row["cpu_ms_per_new"],
                row["cpu_s_per_visitor_hour"],
            ]
        )
    print(f"peer_bench: N={n}, {opening} in flight, held {hold_s:.0f} s; {machine()}")
    headers = [
        "server",
        "dynamic",
        "new visitors/s",
        "p99 ms",
        "CPU ms/new visitor",
        "CPU s per visitor-hour held",
    ]
    print(table(headers, rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--opening", type=int, default=50)
    parser.add_argument("--hold", type=float, default=120.0)
    parser.add_argument("--zar", type=Path, help="a zar checkout: measure zar itself too")
    parser.add_argument("--zar-python", type=Path, help="a Python with zar's dependencies")
    parser.add_argument(
        "--zar-db-url",
        default=DEFAULT_DB_URL,
        help="MySQL for zar; its database `zar` is dropped and created anew",
    )
    parser.add_argument(
        "--zar-workers", type=int, help="gunicorn workers for zar (default: its image's)"
    )
    args = parser.parse_args()
    if (args.zar is None) != (args.zar_python is None):
        parser.error("--zar and --zar-python go together")
    asyncio.run(
        main_async(
            args.n,
            args.opening,
            args.hold,
            args.zar,
            args.zar_python,
            args.zar_db_url,
            args.zar_workers,
        )
    )


if __name__ == "__main__":
    main()

"""The tracker beside a minimal Redis-backed pool (bench/pool_peer.py, zar's shape), one run.

For each server, fresh, with a pool of N numbers:
1. new visitors: N visitors arrive, at most `--opening` in flight. Tracker: a websocket hello
   until its `number` frame (the socket stays open). Peer: one `GET /number` (zar's first call).
   Rate = N / time to serve them all; server CPU per new visitor = CPU time of the server
   processes (the peer counts redis-server too) over that phase / N.
2. held visitors: for `--hold` seconds the N visitors stay. Tracker: sockets open, idle (the
   server pings each every 25 s). Peer: each visitor renews every 30 s, as zar's page does
   (requests spread evenly). CPU per held visitor-hour = CPU seconds / (N x hours held).
CPU time is utime + stime from /proc/<pid>/stat. Both sides run on the same machine, one after
the other, with the client in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp

from bench.common import LOOPBACK, child, cpu_seconds, machine, percentile, raise_nofile, table
from bench.ws_bench import Result, hello_frame, open_one

RENEW_S = 30.0
READY_S = 10.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def redis_server() -> AsyncIterator[tuple[int, int]]:
    """A throwaway redis-server (no persistence): (port, pid)."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        binary,
        "--port",
        str(port),
        "--bind",
        LOOPBACK,
        "--save",
        "",
        "--appendonly",
        "no",
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(READY_S):
            while True:
                try:
                    _, writer = await asyncio.open_connection(LOOPBACK, port)
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
                writer.close()
                break
        yield port, proc.pid
    finally:
        proc.terminate()
        await proc.wait()


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

                async def lease(visitor: str, record: bool) -> None:
                    start = time.perf_counter()
                    async with http.get(url, params={"visitor": visitor}) as response:
                        body = await response.json()
                    if record:
                        latencies.append((time.perf_counter() - start) * 1000)
                        kinds[str(body.get("kind"))] += 1

                async def arrive() -> None:
                    await asyncio.gather(*(lease(f"v{i}", True) for i in range(n)))

                async def hold() -> None:
                    gap = RENEW_S / n
                    begin = time.perf_counter()
                    tasks = []
                    for k in range(int(hold_s / gap)):
                        await asyncio.sleep(max(0.0, begin + k * gap - time.perf_counter()))
                        tasks.append(asyncio.create_task(lease(f"v{k % n}", False)))
                    await asyncio.gather(*tasks)

                open_s, open_cpu = await timed(pids, arrive)
                held_s, held_cpu = await timed(pids, hold)
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


async def main_async(n: int, opening: int, hold_s: float) -> None:
    raise_nofile(4 * n + 1024)
    rows = []
    for name, measure in (("redis pool", measure_peer), ("tracker", measure_tracker)):
        row = await measure(n, opening, hold_s)
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
    args = parser.parse_args()
    asyncio.run(main_async(args.n, args.opening, args.hold))


if __name__ == "__main__":
    main()

"""How many visitor websockets one tracker process holds, next to a bare aiohttp echo server.

For each N, each server runs fresh in a child process (bench/ws_servers.py) and N sockets are
opened from this process, at most `--opening` handshakes at a time; each sends one hello and
waits for its answer:
- tracker: latency from sending the hello to the first `number` frame (the welcome comes first);
  the seeded site's pool holds max(N) numbers, so every visitor should get a `dynamic` number,
  none `untracked`; the kinds are counted to show it;
- echo: latency from sending the same hello to receiving it back.
With every socket open, the server's VmRSS is read from /proc/<pid>/status and compared with
its RSS before the first socket; then all sockets close and the child stops. Runs repeat
`--repeat` times, servers interleaved, and the table shows medians.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.common import (
    DESKTOP_UA,
    LOOPBACK,
    ORIGIN,
    child,
    cpu_seconds,
    fresh_database,
    machine,
    median,
    percentile,
    raise_nofile,
    rss_kib,
    table,
)
from bench.ws_client import LeanSocket, connect

SIZES = (250, 500, 1000, 2000)
RUN_TIMEOUT_S = 300.0
FRAME_TIMEOUT_S = 60.0
SETTLE_S = 1.0
TRACE_WAIT_S = 120.0


@dataclass
class Result:
    server: str
    n: int
    ok: int = 0
    failed: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    open_s: float = 0.0
    rss_idle_kib: int = 0
    rss_held_kib: int = 0
    server_cpu_s: float = 0.0  # the server child's CPU while the N sockets opened
    client_cpu_s: float = 0.0  # this process's, over the same span

    def row(self) -> dict[str, float]:
        held = self.rss_held_kib - self.rss_idle_kib
        return {
            "ok": float(self.ok),
            "p50": percentile(self.latencies_ms, 50),
            "p99": percentile(self.latencies_ms, 99),
            "open_s": self.open_s,
            "rss_idle": self.rss_idle_kib / 1024,
            "rss_held": self.rss_held_kib / 1024,
            "kib_per_socket": held / self.n,
            "dynamic": float(self.kinds.get("dynamic", 0)),
            "untracked": float(self.kinds.get("untracked", 0)),
            "server_cpu_ms": 1000 * self.server_cpu_s / self.n,
            "client_cpu_ms": 1000 * self.client_cpu_s / self.n,
            "per_s": self.n / self.open_s if self.open_s else 0.0,
        }


def hello_frame(site: str) -> str:
    return json.dumps(
        {
            "type": "hello",
            "site": site,
            "visitor": None,
            "tab": "t",
            "url": "https://shop.example/?utm_source=bench",
            "referrer": "",
            "ga": None,
            "ga_session": None,
            "ga_cookies": None,
            "ym": None,
        }
    )


async def first_number(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    while True:
        msg = await ws.receive(timeout=FRAME_TIMEOUT_S)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"socket ended with {msg.type.name} {ws.close_code}")
        frame: dict[str, Any] = json.loads(msg.data)
        if frame.get("type") == "number":
            return frame


async def open_lean(
    port: int,
    hello: str,
    echo: bool,
    gate: asyncio.Semaphore,
    result: Result,
    sockets: list[LeanSocket],
    n: int,
) -> None:
    """`open_one` through the lean client (bench/ws_client.py): the same request and frames."""
    try:
        async with gate:
            sock = await connect(LOOPBACK, port, "/ws", _tab_headers(n))
            sockets.append(sock)
            start = time.perf_counter()
            sock.send_text(hello)
            if echo:
                if await sock.receive_text() != hello:
                    raise ConnectionError("no echo")
                kind = "echo"
            else:
                while (frame := await sock.receive_json()).get("type") != "number":
                    pass
                kind = str(frame.get("kind"))
            result.latencies_ms.append((time.perf_counter() - start) * 1000)
        result.kinds[kind] += 1
        result.ok += 1
    except (OSError, TimeoutError, ValueError):  # WsClosed is a ConnectionError
        result.failed += 1


def _tab_headers(n: int) -> dict[str, str]:
    """Each socket is its own visitor, behind the trusted loopback proxy."""
    return {
        "Origin": ORIGIN,
        "User-Agent": DESKTOP_UA,
        "X-Forwarded-For": f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}",
    }


async def open_one(
    http: aiohttp.ClientSession,
    url: str,
    hello: str,
    echo: bool,
    gate: asyncio.Semaphore,
    result: Result,
    sockets: list[aiohttp.ClientWebSocketResponse],
    n: int,
) -> None:
    try:
        async with gate:
            ws = await http.ws_connect(url, headers=_tab_headers(n), autoping=True)
            sockets.append(ws)
            start = time.perf_counter()
            await ws.send_str(hello)
            if echo:
                msg = await ws.receive(timeout=FRAME_TIMEOUT_S)
                if msg.type is not aiohttp.WSMsgType.TEXT or msg.data != hello:
                    raise ConnectionError(f"no echo: {msg.type.name}")
                kind = "echo"
            else:
                kind = str((await first_number(ws)).get("kind"))
            result.latencies_ms.append((time.perf_counter() - start) * 1000)
        result.kinds[kind] += 1
        result.ok += 1
    except (aiohttp.ClientError, ConnectionError, TimeoutError, ValueError):
        result.failed += 1


async def measure(
    server: str,
    n: int,
    pool: int,
    opening: int,
    trace: bool = False,
    database_server: str = "",
    client: str = "lean",
) -> Result:
    async with fresh_database(database_server if server == "tracker" else "") as database_url:
        return await _measure(server, n, pool, opening, trace, database_url, client)


async def _measure(
    server: str, n: int, pool: int, opening: int, trace: bool, database_url: str, client: str
) -> Result:
    result = Result(server, n)
    args = ["tracker", "--pool", str(pool)] if server == "tracker" else ["echo"]
    if trace and server == "tracker":
        args.append("--trace")
    if database_url:
        args += ["--database-url", database_url]
    async with child("bench.ws_servers", *args) as proc:
        await asyncio.sleep(SETTLE_S)
        result.rss_idle_kib = rss_kib(proc.pid)
        url = f"http://{LOOPBACK}:{proc.ready['port']}/ws"
        hello = hello_frame(str(proc.ready.get("site", "bench")))
        sockets: list[aiohttp.ClientWebSocketResponse] = []
        lean_sockets: list[LeanSocket] = []
        echo = server == "echo"
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            try:
                async with asyncio.timeout(RUN_TIMEOUT_S):
                    gate = asyncio.Semaphore(opening)
                    begin = time.perf_counter()
                    cpu_server, cpu_client = cpu_seconds(proc.pid), cpu_seconds()
                    async with asyncio.TaskGroup() as tg:
                        for i in range(n):
                            if client == "lean":
                                port = int(proc.ready["port"])
                                tg.create_task(
                                    open_lean(port, hello, echo, gate, result, lean_sockets, i)
                                )
                            else:
                                tg.create_task(
                                    open_one(http, url, hello, echo, gate, result, sockets, i)
                                )
                    result.open_s = time.perf_counter() - begin
                    result.server_cpu_s = cpu_seconds(proc.pid) - cpu_server
                    result.client_cpu_s = cpu_seconds() - cpu_client
                    await asyncio.sleep(SETTLE_S)
                    result.rss_held_kib = rss_kib(proc.pid)
                    if trace and server == "tracker":
                        await proc.send("diff")
                        await proc.receive(TRACE_WAIT_S)  # the diff went to its stderr (ours)
            finally:
                for sock in lean_sockets:
                    sock.close()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(60):
                        await asyncio.gather(
                            *(ws.close() for ws in sockets), return_exceptions=True
                        )
    return result


def report(results: list[Result], repeat: int) -> str:
    rows = []
    for n in sorted({r.n for r in results}):
        med = {}
        for server in ("echo", "tracker"):
            runs = [r.row() for r in results if r.server == server and r.n == n]
            med[server] = {key: median([run[key] for run in runs]) for key in runs[0]}
        echo, tracker = med["echo"], med["tracker"]
        rows.append(
            [
                n,
                f"{echo['ok']:.0f}",
                echo["p50"],
                echo["p99"],
                echo["rss_held"],
                f"{tracker['ok']:.0f} ({tracker['dynamic']:.0f}/{tracker['untracked']:.0f})",
                tracker["p50"],
                tracker["p99"],
                tracker["open_s"],
                tracker["rss_idle"],
                tracker["rss_held"],
                tracker["kib_per_socket"],
                echo["kib_per_socket"],
                tracker["p50"] / echo["p50"],
                tracker["rss_held"] / echo["rss_held"],
                echo["per_s"],
                tracker["per_s"],
                tracker["p99"] / echo["p99"],
                echo["server_cpu_ms"],
                tracker["server_cpu_ms"],
                tracker["client_cpu_ms"],
            ]
        )
    headers = [
        "N",
        "echo ok",
        "echo p50 ms",
        "echo p99 ms",
        "echo RSS MiB",
        "tracker ok (dyn/untr)",
        "tracker p50 ms",
        "tracker p99 ms",
        "open all s",
        "RSS idle MiB",
        "RSS held MiB",
        "KiB/socket",
        "echo KiB/socket",
        "p50 x echo",
        "RSS x echo",
        "echo opened/s",
        "tracker new visitors/s",
        "p99 x echo",
        "echo CPU ms/socket",
        "tracker CPU ms/socket",
        "client CPU ms/socket",
    ]
    return f"ws_bench: median of {repeat} runs; {machine()}\n" + table(headers, rows)


async def main_async(
    sizes: list[int], repeat: int, opening: int, trace: bool, database_server: str, client: str
) -> None:
    raise_nofile(4 * max(sizes) + 1024)
    results = []
    for run in range(repeat):
        for n in sizes:
            for server in ("echo", "tracker"):
                result = await measure(
                    server, n, max(sizes), opening, trace, database_server, client
                )
                results.append(result)
                row = result.row()
                print(
                    f"run {run + 1} {server:7} N={n:5} ok={result.ok} failed={result.failed} "
                    f"kinds={dict(result.kinds)} p50={row['p50']:.1f}ms p99={row['p99']:.1f}ms "
                    f"open={result.open_s:.1f}s ({row['per_s']:.0f}/s) "
                    f"cpu ms/socket server={row['server_cpu_ms']:.2f} "
                    f"client={row['client_cpu_ms']:.2f} "
                    f"rss={row['rss_idle']:.1f}->{row['rss_held']:.1f}MiB",
                    flush=True,
                )
    print(report(results, repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--opening", type=int, default=100, help="handshakes in flight at most")
    parser.add_argument(
        "--trace", action="store_true", help="print the tracker's tracemalloc growth per line"
    )
    parser.add_argument(
        "--database-url",
        default="",
        help="a PostgreSQL server (postgresql+asyncpg://...): each tracker run gets a new database",
    )
    parser.add_argument(
        "--client",
        choices=("lean", "aiohttp"),
        default="lean",
        help="the sockets' client: lean (bench/ws_client.py, ~0.2 ms of CPU a socket) or aiohttp's"
        " (~0.8 ms: on 2 cores it limits the echo server's rate)",
    )
    args = parser.parse_args()
    if args.database_url and not args.database_url.startswith("postgresql+asyncpg://"):
        parser.error("--database-url must be postgresql+asyncpg://...")
    if not 1 <= args.repeat <= 10 or not all(1 <= n <= 10_000 for n in args.sizes):
        parser.error("--repeat 1..10 and --sizes 1..10000")
    asyncio.run(
        main_async(
            args.sizes, args.repeat, args.opening, args.trace, args.database_url, args.client
        )
    )


if __name__ == "__main__":
    main()

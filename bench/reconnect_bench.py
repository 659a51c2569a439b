"""Reconnect storm: every open tab comes back at once after a tracker restart (a deploy).

`--visitors` visitors with `--tabs` tabs each open against `calltracking serve` (a child process,
on a fresh SQLite file, or a new database on the `--database-url` PostgreSQL server), each tab from
its visitor's own client address through a trusted proxy header. When every tab shows its dynamic
number, the tracker is stopped with SIGTERM (tabs are closed with 1012, leases end, holds begin)
and started again on the same database; then every tab reconnects at the same instant with its
visitor id. Measured: the time from SIGTERM to the tracker's exit (`stop_s`: what a deploy waits
before it may start the new one; the tabs here never answer the server's close frame, so it
includes aiohttp's 5 s shutdown timeout, which browsers, answering at once, do not cost), the time
until every tab shows a number again, how many show their own number from before (the rest changed
hands: must be none), and the tracker's CPU seconds for the storm. The storm's tabs come from
`--clients` processes (bench/storm_clients.py), all told to go at the same instant.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    DESKTOP_UA,
    LOOPBACK,
    ORIGIN,
    cpu_seconds,
    fresh_database,
    raise_nofile,
    seed_site,
)
from bench.storm_clients import LINE_LIMIT
from bench.ws_client import LeanSocket, connect
from calltracking.store.db import Database
from calltracking.store.migrate import migrate

READY_TIMEOUT_S = 60.0
STORM_TIMEOUT_S = 120.0


@dataclass
class Tab:
    visitor_index: int
    visitor_id: str | None = None
    number: str | None = None
    ws: aiohttp.ClientWebSocketResponse | LeanSocket | None = None
    seconds: float = 0.0


@dataclass
class Storm:
    tabs: list[Tab] = field(default_factory=list)


def _tracker_log() -> Any:
    """Where the tracker's log goes: `$BENCH_TRACKER_LOG` (appended) if set, else nowhere."""
    path = os.environ.get("BENCH_TRACKER_LOG")
    return open(path, "ab") if path else asyncio.subprocess.DEVNULL


async def start_tracker(
    database_url: str, port: int, profile: str | None = None
) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "CALLTRACKING_DATABASE_URL": database_url,
        "CALLTRACKING_HTTP_PORT": str(port),
        "CALLTRACKING_AGI_PORT": "0",
        "CALLTRACKING_TRUSTED_PROXIES": LOOPBACK,
        "CALLTRACKING_WS_MAX_PER_ADDRESS": "100000",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *(["-m", "cProfile", "-o", profile] if profile else []),
        "-m", "calltracking.cli", "serve",
        env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=_tracker_log(),
    )  # fmt: skip
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                async with http.get(f"http://{LOOPBACK}:{port}/healthz") as response:
                    if response.status == 200:
                        return proc
            except aiohttp.ClientError:
                pass
            if proc.returncode is not None:
                raise RuntimeError("the tracker did not start")
            await asyncio.sleep(0.1)
    raise RuntimeError("the tracker did not answer /healthz")


def _headers(tab: Tab) -> dict[str, str]:
    i = tab.visitor_index
    return {
        "Origin": ORIGIN,
        "User-Agent": DESKTOP_UA,
        "X-Forwarded-For": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
    }


def _hello(site_key: str, tab: Tab) -> str:
    return json.dumps({"type": "hello", "site": site_key, "visitor": tab.visitor_id, "tab": "t",
                       "url": "https://shop.example/", "referrer": ""})  # fmt: skip


def _took(tab: Tab, frame: dict[str, Any], begin: float) -> bool:
    """Note what a frame tells the tab; true once it shows its dynamic number."""
    if frame.get("type") == "welcome":
        tab.visitor_id = tab.visitor_id or frame["visitor"]
    if frame.get("type") == "number" and frame.get("kind") == "dynamic":
        tab.number = frame["e164"]
        tab.seconds = time.perf_counter() - begin
        return True
    return False


async def open_tab(
    http: aiohttp.ClientSession, port: int, site_key: str, tab: Tab, gate: asyncio.Semaphore
) -> None:
    async with gate:
        begin = time.perf_counter()
        ws = tab.ws = await http.ws_connect(f"http://{LOOPBACK}:{port}/ws", headers=_headers(tab))
        await ws.send_str(_hello(site_key, tab))
        while True:
            msg = await ws.receive(timeout=STORM_TIMEOUT_S)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"closed: {ws.close_code}")
            if _took(tab, json.loads(msg.data), begin):
                return


async def open_tab_lean(port: int, site_key: str, tab: Tab) -> None:
    """`open_tab` through the lean client (bench/ws_client.py): the same request and frames,
    a quarter of the client's CPU, so the storm's clients do not starve the tracker."""
    begin = time.perf_counter()
    sock = tab.ws = await connect(LOOPBACK, port, "/ws", _headers(tab))
    sock.send_text(_hello(site_key, tab))
    async with asyncio.timeout(STORM_TIMEOUT_S):
        while not _took(tab, await sock.receive_json(), begin):
            pass


async def _storm_worker(port: int, site_key: str, tabs: list[Tab]) -> asyncio.subprocess.Process:
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.storm_clients",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=LINE_LIMIT,
    )  # fmt: skip
    assert worker.stdin is not None and worker.stdout is not None
    job = {"port": port, "site": site_key, "tabs": [[t.visitor_index, t.visitor_id] for t in tabs]}
    worker.stdin.write(json.dumps(job).encode() + b"\n")
    await worker.stdin.drain()
    await worker.stdout.readline()  # ready
    return worker


async def _storm(worker: asyncio.subprocess.Process) -> dict[str, Any]:
    assert worker.stdin is not None and worker.stdout is not None
    worker.stdin.write(b"go\n")
    await worker.stdin.drain()
    answer: dict[str, Any] = json.loads(await worker.stdout.readline())
    return answer


async def run(
    visitors: int,
    tabs: int,
    database_url: str | None,
    opening: int,
    profile: str | None,
    clients: int = 1,
) -> dict[str, Any]:
    raise_nofile(4 * visitors * tabs + 1024)
    async with fresh_database(database_url or "") as fresh:
        return await _run_on(fresh, visitors, tabs, opening, profile, clients)


async def _run_on(
    database_url: str, visitors: int, tabs: int, opening: int, profile: str | None, clients: int
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-storm-") as tmp:
        url = database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'ct.db'}"
        db = Database(url)
        await migrate(db)
        site = await seed_site(db, visitors + 10)
        await db.close()
        port = 18_000 + os.getpid() % 1000
        tracker = await start_tracker(url, port)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            first = [Tab(v) for v in range(visitors)]
            gate = asyncio.Semaphore(opening)
            # Each visitor's first tab mints the visitor; its other tabs then join it.
            await asyncio.gather(*(open_tab(http, port, site.key, t, gate) for t in first))
            print(f"reconnect_bench: {len(first)} first tabs open", file=sys.stderr, flush=True)
            more = [Tab(t.visitor_index, t.visitor_id) for t in first for _ in range(tabs - 1)]
            await asyncio.gather(*(open_tab(http, port, site.key, t, gate) for t in more))
            print(f"reconnect_bench: {len(more)} more tabs open", file=sys.stderr, flush=True)
            before = {t.visitor_id: t.number for t in first}
            stopping = time.perf_counter()
            tracker.send_signal(signal.SIGTERM)
            await tracker.wait()
            stop_s = time.perf_counter() - stopping
            for t in first + more:
                if isinstance(t.ws, aiohttp.ClientWebSocketResponse):
                    await t.ws.close()
            tracker = await start_tracker(url, port, profile)
            print("reconnect_bench: restarted; the storm begins", file=sys.stderr, flush=True)
            storm = [Tab(t.visitor_index, t.visitor_id) for t in first + more]
            share = [storm[i::clients] for i in range(clients)]
            workers = [await _storm_worker(port, site.key, tabs) for tabs in share]
            cpu_before = cpu_seconds(tracker.pid)
            begin = time.perf_counter()
            answers = await asyncio.gather(*(_storm(worker) for worker in workers))
            storm_s = time.perf_counter() - begin
            cpu_s = cpu_seconds(tracker.pid) - cpu_before
            client_cpu_s = sum(answer["cpu_s"] for answer in answers)
            for worker in workers:
                worker.stdin.close()  # type: ignore[union-attr]
                await worker.wait()
        tracker.send_signal(signal.SIGTERM)
        await tracker.wait()
    reached = [tab for answer in answers for tab in answer["tabs"]]
    failed = sum(1 for _, number, _ in reached if number is None)
    same = sum(1 for visitor, number, _ in reached if number and number == before[visitor])
    return {
        "visitors": visitors,
        "tabs": len(storm),
        "stop_s": round(stop_s, 2),
        "storm_s": round(storm_s, 2),
        "slowest_tab_s": round(max((seconds for _, _, seconds in reached), default=0.0), 2),
        "own_number_again": same,
        "changed_hands": len(storm) - same - failed,
        "failed": failed,
        "tracker_cpu_s": round(cpu_s, 2),
        "client_cpu_s": round(client_cpu_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--visitors", type=int, default=5000)
    parser.add_argument("--tabs", type=int, default=2)
    parser.add_argument("--opening", type=int, default=100, help="handshakes in flight at first")
    parser.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL server (postgresql+asyncpg://...): the run gets a new database on it",
    )
    parser.add_argument("--profile", default=None, help="cProfile the restarted tracker to FILE")
    parser.add_argument(
        "--clients", type=int, default=2, help="client processes the storm's tabs come from"
    )
    args = parser.parse_args()
    if not 1 <= args.clients <= 16:
        parser.error("--clients 1..16")
    result = asyncio.run(
        run(args.visitors, args.tabs, args.database_url, args.opening, args.profile, args.clients)
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()

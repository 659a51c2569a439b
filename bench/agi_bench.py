"""FastAGI dialogues per second through the whole tracker (`calltracking serve`, every part) while
visitors come and go, next to two baselines measured in the same run: a bare asyncio TCP server
doing one request/response round trip per connection, and the tracker's FastAGI server alone
(`dialogue`: the same ten round trips, its call starts answered at once from memory), which
separates what the contract's dialogue costs from what the store and the rest of the process
add.

The tracker runs on a fresh SQLite file, or with `--database-url postgresql+asyncpg://.../any`
on a fresh PostgreSQL database this bench creates on that server for each run and drops after.
Before measuring, `--visitors` visitor sockets say hello on its web port (bench/agi_visitors.py);
during the run `--churn-per-s` of them a second leave and new ones arrive, and every call goes
to a number one of the open visitors is shown at that moment (a leased number: the attribution
is a real lookup, the answer `dynamic`, or `held` when its visitor has just left).

Each request is one new TCP connection playing Asterisk's side of a full dialogue, as in
tests/agi/fixtures: the Asterisk 22 env block (`calltracking.pbxsim.agi_client.agi_env`, a
fresh uniqueid each time, so every request stores a new call), then an answer to each command
(`GET FULL VARIABLE "${CHANNEL(linkedid)}"` gets the uniqueid, every `SET VARIABLE` gets
`200 result=1`) until the server closes; then `HANGUP`, as Asterisk sends. A request whose
dialogue set `CALLTRACKING_ERROR` (the 500 ms budget ran out, or the store failed) counts as an
error: "past budget" in the table. The bare server reads the env block and answers one line.

The Asterisk side is StreamReader/StreamWriter per connection (`--client streams`, the
default, as in every earlier figure) or an `asyncio.Protocol` (`--client protocol`). Both send
the same bytes and answer each command only after it arrived (tests/bench/test_agi_clients.py).
The protocol client spends ~10% less CPU per request, which made no difference measurable on
the shared machine (docs/benchmarks.md), so the default stays comparable with earlier runs.
Each run prints the client's CPU per request too.

`--concurrency` workers each run requests back to back for `--seconds` (and at most
`--max-requests` in all); latency is connect to the server's close; the server's CPU (utime +
stime of its process, all threads) over the same span, divided by the dialogues answered, is
its CPU per dialogue (it includes the visitors' churn). With `--database-url` on a PostgreSQL
server of this host, "database CPU ms/dialogue" is that server's CPU over the same span (every
`postgres` process, backends that exited included; other clients' work too) per dialogue: on a
shared host, part of what a dialogue waits for. Every server runs fresh in a
child process (bench/agi_servers.py); runs repeat `--repeat` times, interleaved, medians shown.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.agi_visitors import Visitors
from bench.common import (
    LOOPBACK,
    child,
    cpu_seconds,
    fresh_database,
    local_postgres_cpu_seconds,
    local_postgres_cpu_since,
    machine,
    median,
    percentile,
    table,
)
from bench.cpu_samples import finish_sampling, sampler_env, start_sampling
from calltracking.pbxsim.agi_client import agi_env, env_block

LEVELS = (1, 8, 32)
# bench/agi_servers.py: one round trip; our FastAGI code alone; the whole tracker.
SERVERS = ("bare", "dialogue", "agi")
REQUEST_TIMEOUT_S = 10.0
HANDSHAKE_S = 30.0
DID = "74951110001"
EPOCH = 1795592516


@dataclass(frozen=True)
class Load:
    database_url: str  # empty: SQLite
    visitors: int
    churn_per_s: float
    cpu_samples: Path | None = None  # a folder: sample the tracker's CPU (bench/cpu_samples.py)


@dataclass
class Result:
    server: str
    concurrency: int
    ok: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    kinds: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    server_cpu_s: float = 0.0  # the server process's CPU (all its threads) during the run
    client_cpu_s: float = 0.0  # this process's (the Asterisk side's and the visitors')
    # PostgreSQL's on this host (bench.common.local_postgres_cpu_seconds); None: not measured
    database_cpu_s: float | None = None

    def row(self) -> dict[str, float]:
        return {
            "rps": self.ok / self.elapsed_s if self.elapsed_s else 0.0,
            "cpu_ms": 1000 * self.server_cpu_s / self.ok if self.ok else 0.0,
            "client_cpu_ms": 1000 * self.client_cpu_s / self.ok if self.ok else 0.0,
            "database_cpu_ms": (
                1000 * self.database_cpu_s / self.ok
                if self.ok and self.database_cpu_s is not None
                else float("nan")
            ),
            "p50": percentile(self.latencies_ms, 50),
            "p99": percentile(self.latencies_ms, 99),
            "ok": float(self.ok),
            "errors": float(self.errors),
        }


def request_block(port: int, uniqueid: str, did: str = DID) -> bytes:
    return env_block(
        agi_env(
            request=f"agi://{LOOPBACK}:{port}/calltracking?did={did.lstrip('+')}",
            channel=f"PJSIP/trunk-{int(uniqueid.split('.')[1]):08x}",
            uniqueid=uniqueid,
            caller="+79161234567",
            context="from-trunk",
            did=did,
            args=[],
        )
    )


async def dialogue(port: int, uniqueid: str, did: str = DID) -> str:
    """Asterisk's side of one session; returns CALLTRACKING_KIND, or 'error'."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    sets: dict[str, str] = {}
    try:
        writer.write(request_block(port, uniqueid, did))
        await writer.drain()
        while line := (await reader.readline()).decode():
            words = line.split()
            if line.startswith("GET FULL VARIABLE"):
                writer.write(f"200 result=1 ({uniqueid})\n".encode())
            else:
                if words[:2] == ["SET", "VARIABLE"] and len(words) >= 4:
                    sets[words[2]] = words[3].strip('"')
                writer.write(b"200 result=1\n")
            await writer.drain()
        with contextlib.suppress(ConnectionError):
            writer.write(b"HANGUP\n")
            await writer.drain()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    if "CALLTRACKING_ERROR" in sets:
        return "error"
    return sets.get("CALLTRACKING_KIND", "none")


class _AsteriskSide(asyncio.Protocol):
    """`dialogue` (or, with `bare`, `round_trip`) as a protocol: the same bytes written in the
    same order, each answer only after the line it answers, without the streams' layers (the
    client shares the machine's two cores with the server it measures)."""

    def __init__(self, block: bytes, uniqueid: str, bare: bool, done: asyncio.Future[str]) -> None:
        self._block = block
        self._linkedid_reply = f"200 result=1 ({uniqueid})\n".encode()
        self._bare = bare
        self._done = done
        self._buffer = b""
        self._sets: dict[str, str] = {}
        self._eof = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self._block)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._bare:
            return
        while (end := self._buffer.find(b"\n")) >= 0:
            line, self._buffer = self._buffer[: end + 1], self._buffer[end + 1 :]
            self._answer(line.decode())

    def _answer(self, line: str) -> None:
        assert self.transport is not None
        if line.startswith("GET FULL VARIABLE"):
            self.transport.write(self._linkedid_reply)
            return
        words = line.split()
        if words[:2] == ["SET", "VARIABLE"] and len(words) >= 4:
            self._sets[words[2]] = words[3].strip('"')
        self.transport.write(b"200 result=1\n")

    def eof_received(self) -> bool:
        self._eof = True
        if not self._bare:
            if self._buffer:  # a last line without LF, as readline() would return it
                self._answer(self._buffer.decode())
                self._buffer = b""
            assert self.transport is not None
            self.transport.write(b"HANGUP\n")
        return False  # the transport closes itself once the HANGUP is written

    def connection_lost(self, exc: Exception | None) -> None:
        if self._done.done():
            return
        if exc is not None and not self._eof:  # as the streams client, errors after EOF pass
            self._done.set_exception(exc)
        elif self._bare:
            self._done.set_result("bare" if self._buffer.startswith(b"200 ") else "error")
        elif not self._eof:
            self._done.set_exception(ConnectionResetError("closed without EOF"))
        elif "CALLTRACKING_ERROR" in self._sets:
            self._done.set_result("error")
        else:
            self._done.set_result(self._sets.get("CALLTRACKING_KIND", "none"))


async def _protocol_talk(port: int, uniqueid: str, did: str, bare: bool) -> str:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[str] = loop.create_future()
    block = request_block(port, uniqueid) if bare else request_block(port, uniqueid, did)
    transport, _ = await loop.create_connection(
        lambda: _AsteriskSide(block, uniqueid, bare, done), LOOPBACK, port
    )
    try:
        return await done
    finally:
        transport.close()


async def dialogue_protocol(port: int, uniqueid: str, did: str = DID) -> str:
    """`dialogue` through `_AsteriskSide`."""
    return await _protocol_talk(port, uniqueid, did, bare=False)


async def round_trip_protocol(port: int, uniqueid: str, did: str = DID) -> str:
    """`round_trip` through `_AsteriskSide`."""
    return await _protocol_talk(port, uniqueid, did, bare=True)


async def round_trip(port: int, uniqueid: str, did: str = DID) -> str:
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        writer.write(request_block(port, uniqueid))
        await writer.drain()
        data = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return "bare" if data.startswith(b"200 ") else "error"


Talk = Callable[[int, str, str], Awaitable[str]]
# --client: (the bare server's side, the tracker's side)
CLIENTS: dict[str, tuple[Talk, Talk]] = {
    "protocol": (round_trip_protocol, dialogue_protocol),
    "streams": (round_trip, dialogue),
}


async def worker(
    server: str,
    port: int,
    ids: itertools.count[int],
    deadline: float,
    budget: list[int],
    result: Result,
    numbers: Callable[[], list[str]],
    client: str,
) -> None:
    talk = CLIENTS[client][server != "bare"]
    rng = random.Random(next(ids))
    while time.perf_counter() < deadline and budget[0] > 0:
        budget[0] -= 1
        uniqueid = f"{EPOCH}.{next(ids)}"
        leased = numbers()
        did = rng.choice(leased) if leased else DID
        start = time.perf_counter()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                kind = await talk(port, uniqueid, did)
        except (OSError, TimeoutError):
            kind = "error"
        if kind == "error":
            result.errors += 1
            continue
        result.latencies_ms.append((time.perf_counter() - start) * 1000)
        result.kinds[kind] += 1
        result.ok += 1


async def measure(
    server: str,
    concurrency: int,
    seconds: float,
    max_requests: int,
    load: Load,
    client: str,
    run: int = 1,
) -> Result:
    result = Result(server, concurrency)
    samples = (
        load.cpu_samples / f"run{run}-{server}-c{concurrency}"
        if load.cpu_samples and server == "agi"
        else None
    )
    async with contextlib.AsyncExitStack() as stack:
        args = [server]
        if server == "agi":
            url = await stack.enter_async_context(fresh_database(load.database_url))
            args += ["--database-url", url] if url else []
        env = sampler_env(samples) if samples else None
        proc = await stack.enter_async_context(child("bench.agi_servers", *args, env=env))
        port = int(proc.ready["port"])
        numbers: Callable[[], list[str]] = list
        stop = asyncio.Event()
        async with contextlib.AsyncExitStack() as visiting:
            if server == "agi":
                http = await visiting.enter_async_context(
                    aiohttp.ClientSession(
                        connector=aiohttp.TCPConnector(limit=0),  # one connection per socket
                        timeout=aiohttp.ClientTimeout(total=HANDSHAKE_S),
                    )
                )
                visitors = Visitors(http, int(proc.ready["http_port"]), str(proc.ready["site"]))
                await visitors.open_many(load.visitors)
                print(
                    f"visitors: {visitors.opened} open, {len(visitors.leased())} leased, "
                    f"failed {dict(visitors.failed)}",
                    flush=True,
                )
                visiting.push_async_callback(visitors.close_all)
                churn = asyncio.create_task(visitors.churn(load.visitors, load.churn_per_s, stop))
                visiting.push_async_callback(_stopped, churn, stop)
                numbers = visitors.leased
            ids = itertools.count()
            budget = [max_requests]
            if samples:
                start_sampling([proc.pid])
            begin, cpu, own = time.perf_counter(), cpu_seconds(proc.pid), cpu_seconds()
            # Only the tracker uses the database; the baselines never touch it.
            uses_database = bool(load.database_url) and server == "agi"
            database = local_postgres_cpu_seconds() if uses_database else None
            with collector_paused():
                async with (
                    asyncio.timeout(seconds + 2 * REQUEST_TIMEOUT_S),
                    asyncio.TaskGroup() as tg,
                ):
                    for _ in range(concurrency):
                        tg.create_task(
                            worker(
                                server, port, ids, begin + seconds, budget, result, numbers, client
                            )
                        )
            result.elapsed_s = time.perf_counter() - begin
            result.server_cpu_s = cpu_seconds(proc.pid) - cpu
            result.client_cpu_s = cpu_seconds() - own
            result.database_cpu_s = local_postgres_cpu_since(database)
            if samples:
                await finish_sampling(
                    samples, [("agi", proc.pid, result.server_cpu_s)], max(1, result.ok)
                )
    return result


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection in this process while it measures: a pass (the full ones
    took ~26 ms over the visitors' sockets) stalls every dialogue in flight, and the stall would
    count as the server's latency. The client's garbage is freed by reference counting; what
    cycles it leaves for a run's few seconds are collected after."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


async def _stopped(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    stop.set()
    await task


def report(results: list[Result], repeat: int) -> str:
    rows = []
    for level in sorted({r.concurrency for r in results}):
        med = {}
        for server in SERVERS:
            runs = [r.row() for r in results if r.server == server and r.concurrency == level]
            med[server] = {key: median([run[key] for run in runs]) for key in runs[0]}
        bare, floor, agi = med["bare"], med["dialogue"], med["agi"]
        rows.append(
            [
                level,
                bare["rps"],
                bare["p50"],
                bare["p99"],
                floor["rps"],
                floor["p99"],
                agi["rps"],
                agi["p50"],
                agi["p99"],
                f"{agi['ok']:.0f}/{agi['errors']:.0f}",
                agi["rps"] / bare["rps"],
                agi["p99"] / bare["p99"],
                floor["p99"] / bare["p99"],
                agi["p99"] / floor["p99"],
                bare["cpu_ms"],
                floor["cpu_ms"],
                agi["cpu_ms"],
                agi["database_cpu_ms"],
            ]
        )
    headers = [
        "concurrency",
        "bare req/s",
        "bare p50 ms",
        "bare p99 ms",
        "dialogue req/s",
        "dialogue p99 ms",
        "AGI req/s",
        "AGI p50 ms",
        "AGI p99 ms",
        "AGI ok/past budget",
        "req/s x bare",
        "p99 x bare",
        "dialogue p99 x bare",
        "AGI p99 x dialogue",
        "bare CPU ms/req",
        "dialogue CPU ms/req",
        "AGI CPU ms/dialogue",
        "database CPU ms/dialogue",
    ]
    return f"agi_bench: median of {repeat} runs; {machine()}\n" + table(headers, rows)


async def main_async(
    levels: list[int], repeat: int, seconds: float, max_requests: int, load: Load, client: str
) -> None:
    results = []
    for run in range(repeat):
        for level in levels:
            for server in SERVERS:
                result = await measure(server, level, seconds, max_requests, load, client, run + 1)
                results.append(result)
                row = result.row()
                print(
                    f"run {run + 1} {server:8} c={level:3} ok={result.ok} err={result.errors} "
                    f"kinds={dict(result.kinds)} {row['rps']:.0f} req/s "
                    f"p50={row['p50']:.1f}ms p99={row['p99']:.1f}ms cpu={row['cpu_ms']:.2f}ms "
                    f"client cpu={row['client_cpu_ms']:.2f}ms"
                    + (
                        f" database cpu={row['database_cpu_ms']:.2f}ms"
                        if result.database_cpu_s is not None
                        else ""
                    ),
                    flush=True,
                )
    print(f"client: {client}")
    print(report(results, repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(LEVELS))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--max-requests", type=int, default=50_000)
    parser.add_argument("--database-url", default="", help="a PostgreSQL server (any database)")
    parser.add_argument("--visitors", type=int, default=200)
    parser.add_argument("--churn-per-s", type=float, default=20.0)
    parser.add_argument(
        "--client",
        choices=sorted(CLIENTS),
        default="streams",
        help="how the Asterisk side talks (the same bytes either way); protocol: a leaner one",
    )
    parser.add_argument(
        "--cpu-samples",
        type=Path,
        default=None,
        help="sample the tracker's CPU during each AGI run (bench/sampler_site/) into this "
        "folder, per dialogue: `python -m bench.cpu_samples DIR/run1-agi-c32.json --only agi`",
    )
    args = parser.parse_args()
    if args.cpu_samples:
        args.cpu_samples.mkdir(parents=True, exist_ok=True)
    if not 1 <= args.repeat <= 10 or not 0 < args.seconds <= 120:
        parser.error("--repeat 1..10, --seconds up to 120")
    if not all(1 <= c <= 256 for c in args.concurrency):
        parser.error("--concurrency 1..256")
    if args.database_url and not args.database_url.startswith("postgresql+asyncpg://"):
        parser.error("--database-url: postgresql+asyncpg://... (SQLite is the default)")
    load = Load(args.database_url, args.visitors, args.churn_per_s, args.cpu_samples)
    asyncio.run(
        main_async(
            args.concurrency, args.repeat, args.seconds, args.max_requests, load, args.client
        )
    )


if __name__ == "__main__":
    main()

"""FastAGI requests per second through the real `AgiServer` + `SqlCallRecorder` on SQLite, next
to a bare asyncio TCP server doing one request/response round trip per connection.

Each request is one new TCP connection playing Asterisk's side of a full dialogue, as in
tests/agi/fixtures: the Asterisk 22 env block (`calltracking.pbxsim.agi_client.agi_env`, a
fresh uniqueid each time, so every request stores a new call), then an answer to each command
(`GET FULL VARIABLE "${CHANNEL(linkedid)}"` gets the uniqueid, every `SET VARIABLE` gets
`200 result=1`) until the server closes; then `HANGUP`, as Asterisk sends. A request whose
dialogue set `CALLTRACKING_ERROR` (the 500 ms budget ran out, or the store failed) counts as an
error. The bare server reads the env block and answers one line.

`--concurrency` workers each run requests back to back for `--seconds` (and at most
`--max-requests` in all); latency is connect to the server's close. Every server runs fresh in a
child process (bench/agi_servers.py); runs repeat `--repeat` times, interleaved, medians shown.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field

from bench.common import LOOPBACK, child, machine, median, percentile, table
from calltracking.pbxsim.agi_client import agi_env, env_block

LEVELS = (1, 8, 32)
REQUEST_TIMEOUT_S = 10.0
DID = "74951110001"
EPOCH = 1795592516


@dataclass
class Result:
    server: str
    concurrency: int
    ok: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    kinds: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)

    def row(self) -> dict[str, float]:
        return {
            "rps": self.ok / self.elapsed_s if self.elapsed_s else 0.0,
            "p50": percentile(self.latencies_ms, 50),
            "p99": percentile(self.latencies_ms, 99),
            "ok": float(self.ok),
            "errors": float(self.errors),
        }


def request_block(port: int, uniqueid: str) -> bytes:
    return env_block(
        agi_env(
            request=f"agi://{LOOPBACK}:{port}/calltracking?did={DID}",
            channel=f"PJSIP/trunk-{int(uniqueid.split('.')[1]):08x}",
            uniqueid=uniqueid,
            caller="+79161234567",
            context="from-trunk",
            did=DID,
            args=[],
        )
    )


async def dialogue(port: int, uniqueid: str) -> str:
    """Asterisk's side of one session; returns CALLTRACKING_KIND, or 'error'."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    sets: dict[str, str] = {}
    try:
        writer.write(request_block(port, uniqueid))
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


async def round_trip(port: int, uniqueid: str) -> str:
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


async def worker(
    server: str,
    port: int,
    ids: itertools.count[int],
    deadline: float,
    budget: list[int],
    result: Result,
) -> None:
    talk = dialogue if server == "agi" else round_trip
    while time.perf_counter() < deadline and budget[0] > 0:
        budget[0] -= 1
        uniqueid = f"{EPOCH}.{next(ids)}"
        start = time.perf_counter()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                kind = await talk(port, uniqueid)
        except (OSError, TimeoutError):
            kind = "error"
        if kind == "error":
            result.errors += 1
            continue
        result.latencies_ms.append((time.perf_counter() - start) * 1000)
        result.kinds[kind] += 1
        result.ok += 1


async def measure(server: str, concurrency: int, seconds: float, max_requests: int) -> Result:
    result = Result(server, concurrency)
    async with child("bench.agi_servers", server) as proc:
        port = int(proc.ready["port"])
        ids = itertools.count()
        budget = [max_requests]
        begin = time.perf_counter()
        async with asyncio.timeout(seconds + 2 * REQUEST_TIMEOUT_S), asyncio.TaskGroup() as tg:
            for _ in range(concurrency):
                tg.create_task(worker(server, port, ids, begin + seconds, budget, result))
        result.elapsed_s = time.perf_counter() - begin
    return result


def report(results: list[Result], repeat: int) -> str:
    rows = []
    for level in sorted({r.concurrency for r in results}):
        med = {}
        for server in ("bare", "agi"):
            runs = [r.row() for r in results if r.server == server and r.concurrency == level]
            med[server] = {key: median([run[key] for run in runs]) for key in runs[0]}
        bare, agi = med["bare"], med["agi"]
        rows.append(
            [
                level,
                bare["rps"],
                bare["p50"],
                bare["p99"],
                agi["rps"],
                agi["p50"],
                agi["p99"],
                f"{agi['ok']:.0f}/{agi['errors']:.0f}",
                agi["rps"] / bare["rps"],
                agi["p50"] / bare["p50"],
            ]
        )
    headers = [
        "concurrency",
        "bare req/s",
        "bare p50 ms",
        "bare p99 ms",
        "AGI req/s",
        "AGI p50 ms",
        "AGI p99 ms",
        "AGI ok/err",
        "req/s x bare",
        "p50 x bare",
    ]
    return f"agi_bench: median of {repeat} runs; {machine()}\n" + table(headers, rows)


async def main_async(levels: list[int], repeat: int, seconds: float, max_requests: int) -> None:
    results = []
    for run in range(repeat):
        for level in levels:
            for server in ("bare", "agi"):
                result = await measure(server, level, seconds, max_requests)
                results.append(result)
                row = result.row()
                print(
                    f"run {run + 1} {server:4} c={level:3} ok={result.ok} err={result.errors} "
                    f"kinds={dict(result.kinds)} {row['rps']:.0f} req/s "
                    f"p50={row['p50']:.1f}ms p99={row['p99']:.1f}ms",
                    flush=True,
                )
    print(report(results, repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(LEVELS))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--max-requests", type=int, default=50_000)
    args = parser.parse_args()
    if not 1 <= args.repeat <= 10 or not 0 < args.seconds <= 120:
        parser.error("--repeat 1..10, --seconds up to 120")
    if not all(1 <= c <= 256 for c in args.concurrency):
        parser.error("--concurrency 1..256")
    asyncio.run(main_async(args.concurrency, args.repeat, args.seconds, args.max_requests))


if __name__ == "__main__":
    main()

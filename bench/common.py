"""What the benchmarks share: child processes, statistics, memory, file limits, tables, seeding.

Rules:
- A child is `python -m bench.<module> ...`; it prints one JSON line when it is ready, serves
  until its stdin closes (or its own time limit passes), then exits. The parent closes stdin,
  waits a bounded time, then terminates and at last kills it: no child outlives a run.
- Percentiles are nearest-rank on the sorted sample; an empty sample gives NaN.
- Memory is VmRSS from /proc/<pid>/status (Linux; no psutil needed).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import os
import resource
import secrets
import statistics
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from calltracking.core.settings import SiteSettings
from calltracking.store.db import Database
from calltracking.store.sites import (
    Site,
    add_to_reserve,
    create_account,
    create_site,
    top_up_pool,
)

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
ORIGIN = "https://shop.example"
DESKTOP_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0 Safari/537.36"
)
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


# -- child processes -----------------------------------------------------------------------------
@dataclass
class Child:
    proc: asyncio.subprocess.Process
    ready: dict[str, Any]

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def receive(self, timeout_s: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout_s):
            line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"child {self.pid} exited (code {self.proc.returncode})")
        message: dict[str, Any] = json.loads(line)
        return message


@asynccontextmanager
async def child(module: str, *args: str, env: dict[str, str] | None = None) -> AsyncIterator[Child]:
    """Start `python -m module args` (with `env` added to this process's environment), wait
    for its ready line, stop it on exit."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        cwd=ROOT,
        env={**os.environ, **env} if env else None,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        running = Child(proc, {})
        running.ready = await running.receive(READY_TIMEOUT_S)
        yield running
    finally:
        await _stop(proc)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        async with asyncio.timeout(STOP_TIMEOUT_S):
            await proc.wait()
        return
    except TimeoutError:
        pass
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        async with asyncio.timeout(5):
            await proc.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


def announce(ready: dict[str, Any]) -> None:
    """Child side: the one ready line the parent waits for."""
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()


async def stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def until_stdin_closes(max_s: float) -> None:
    """Child side: serve until the parent closes our stdin, at most `max_s`."""
    reader = await stdin_lines()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max_s):
            while await reader.readline():
                pass


def quiet_logging() -> None:
    """Per-call INFO lines would be part of what is measured; benchmarks log warnings only."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)


# -- numbers ---------------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


def median_row(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """Field by field median of repeated runs."""
    return {key: median([row[key] for row in rows]) for key in rows[0]}


def rss_kib(pid: int | None = None) -> int:
    status = Path(f"/proc/{pid if pid is not None else 'self'}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc status")


def cpu_seconds(pid: int | None = None) -> float:
    """utime + stime of `pid` (default: this process; not its children), in seconds."""
    if pid is None:
        # The process's own clock counts nanoseconds; /proc counts ticks of 10 ms, too coarse for
        # a run of a few hundred visitors (decider_profile's 200 moved in steps of 0.05 ms each).
        return time.process_time()
    return sum(user_and_kernel_seconds(pid))


def user_and_kernel_seconds(pid: int | None = None) -> tuple[float, float]:
    """utime and stime of `pid` (default: this process; not its children), in seconds."""
    fields = _stat_fields(pid if pid is not None else "self")
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _stat_fields(pid: int | str) -> list[str]:
    """The fields of /proc/PID/stat after the command name (which may hold spaces): [1] the
    parent, [11] utime, [12] stime, [13] cutime, [14] cstime, in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()


def _pids_named(name: str) -> Iterator[int]:
    """This host's processes whose command name is `name` (any gone meanwhile skipped)."""
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == name:
                yield int(comm.parent.name)
        except OSError:  # the process went away meanwhile
            continue


def context_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of `pid`'s main thread, the one running the
    event loop: a voluntary switch is mostly the loop going to sleep with nothing ready, so per
    event handled it says how many events each wake-up found."""
    counts = {"voluntary_ctxt_switches": 0, "nonvoluntary_ctxt_switches": 0}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in counts:
            counts[key] = int(value)
    return counts["voluntary_ctxt_switches"], counts["nonvoluntary_ctxt_switches"]


def local_broker_pid() -> int | None:
    """The pid of a RabbitMQ broker on this host (its Erlang VM, `beam.smp`), if one runs."""
    return next(_pids_named("beam.smp"), None)


def local_postgres_cpu_seconds() -> float | None:
    """The CPU (user + system) the PostgreSQL server on this host has spent since it started:
    every live `postgres` process, and what the postmaster's reaped children (backends that
    have exited) spent. None when no PostgreSQL server runs here. The difference over a run is
    the database's share of it, other clients of the same server included."""
    tick = os.sysconf("SC_CLK_TCK")
    ticks, seen = 0, False
    for pid in _pids_named("postgres"):
        try:
            fields = _stat_fields(pid)
            parent = Path(f"/proc/{fields[1]}/comm").read_text().strip()
        except OSError:  # the process went away meanwhile
            continue
        seen = True
        ticks += int(fields[11]) + int(fields[12])
        if parent != "postgres":  # the postmaster: its exited backends' time
            ticks += int(fields[13]) + int(fields[14])
    return ticks / tick if seen else None


def local_postgres_cpu_since(start: float | None) -> float | None:
    """What the local PostgreSQL server spent since `local_postgres_cpu_seconds()` gave
    `start`; None when either reading is missing."""
    now = local_postgres_cpu_seconds() if start is not None else None
    return None if start is None or now is None else now - start


def host_jiffies() -> tuple[int, int]:
    """(busy, total) clock ticks of every CPU of the host since boot (/proc/stat): the share of
    the host a run kept busy is the ratio of their differences."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # without guest time, which user time already counts
    return total - idle, total


def raise_nofile(wanted: int) -> int:
    """Raise the soft open-files limit towards `wanted` (children inherit it); the new soft."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += [
        "| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
    return str(value)


def machine() -> str:
    import os
    import platform

    return (
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()}, "
        f"reference loop {reference_loop_ms():.0f} ms"
    )


def reference_loop_ms(rounds: int = 3) -> float:
    """A fixed pure-Python workload (a million dict updates and string joins), best of
    `rounds`, in ms: the machine's speed at the time of a run, so that runs of different
    sessions, on hosts up to twice as fast as each other, can be told apart."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        counts: dict[str, int] = {}
        for i in range(1_000_000):
            key = "k" + str(i & 1023)
            counts[key] = counts.get(key, 0) + 1
        best = min(best, time.perf_counter() - start)
    return best * 1000


# -- seeding -------------------------------------------------------------------------------------
T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def reserve_numbers(count: int, index: int = 0) -> list[str]:
    """The reserve of the `index`th seeded site (each its own numbers)."""
    return [f"+749511{1 + index}{n:04d}" for n in range(1, count + 1)]


async def seed_site(db: Database, pool: int, *, grown: bool = False, index: int = 0) -> Site:
    """An account and a site on `shop.example` with `pool` reserve numbers it may lease; with
    `grown`, already in its pool (`pool_min` = `pool_max`), as a site that has been running.
    Sites of other `index`es (up to 8) have numbers of their own, the same settings."""
    async with db.write() as conn:
        # max_numbers counts the three defaults too
        account = await create_account(conn, "bench", T0, max_numbers=pool + 3)
        await add_to_reserve(conn, reserve_numbers(pool, index), T0)
        settings = dataclasses.replace(SiteSettings(), pool_max=pool, pool_min=pool if grown else 0)
        site = await create_site(
            conn,
            account_id=account.id,
            name="shop" if not index else f"shop {index + 1}",
            domains=("shop.example",),
            defaults={
                kind: f"+7495000{9001 + 10 * index + k}"
                for k, kind in enumerate(("initial", "expired", "untracked"))
            },
            settings=settings,
            now=T0,
        )
        if grown:  # as the operator API does for a site's pool_min
            await top_up_pool(conn, site, T0)
        return site


@contextlib.asynccontextmanager
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    """A new, empty database on the PostgreSQL server of `server_url`, dropped afterwards."""
    if not server_url:
        yield ""
        return
    name = f"bench_{secrets.token_hex(4)}"
    admin = create_async_engine(
        make_url(server_url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    try:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as conn:
                await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


async def serve_until_stdin_closes(app: Any, max_s: float, **runner_options: Any) -> None:
    """Serve `app` (an aiohttp Application) on a free loopback port, announce `{"port", "pid"}`,
    and stop when stdin closes or `max_s` passed: the bare servers the benchmarks compare with."""
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None, **runner_options)
    await runner.setup()
    try:
        await web.TCPSite(runner, LOOPBACK, 0).start()
        port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
        announce({"port": port, "pid": os.getpid()})
        await until_stdin_closes(max_s)
    finally:
        await runner.cleanup()

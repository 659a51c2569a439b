"""How much CPU an idle tracker burns: `calltracking serve` with nobody on it.

The tracker runs as an operator starts it (the `calltracking serve` console entry, all parts or
`--only ...`), on a fresh SQLite file (or a new database on the `--database-url` server) holding
one configured site with a pool of numbers and no visitors, no AMI host. Once `/livez` answers and
a warm-up has passed, the process's CPU time (utime + stime from /proc/<pid>/stat) is read before
and after `--seconds` of wall time; cores used = CPU seconds / wall seconds. The target (issue 9):
under 0.005 of a core.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import tempfile
import time

import aiohttp

from bench.common import LOOPBACK, cpu_seconds, fresh_database, machine, seed_site, table
from calltracking.store.db import Database
from calltracking.store.migrate import migrate

WARM_UP_S = 5.0
READY_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


async def prepare(database_url: str) -> None:
    db = Database(database_url)
    try:
        await migrate(db)
        await seed_site(db, 100)
    finally:
        await db.close()


async def wait_live(port: int, proc: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(f"serve exited with {proc.returncode}")
            try:
                async with http.get(f"http://{LOOPBACK}:{port}/livez") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError("serve did not answer /livez in time")


async def measure(only: str | None, database_url: str, amqp_url: str, seconds: float) -> float:
    """Cores used by one idle `calltracking serve` over `seconds`."""
    await prepare(database_url)
    http_port = free_port()
    env = {
        **os.environ,
        "CALLTRACKING_DATABASE_URL": database_url,
        "CALLTRACKING_HTTP_HOST": LOOPBACK,
        "CALLTRACKING_HTTP_PORT": str(http_port),
        "CALLTRACKING_AGI_HOST": LOOPBACK,
        "CALLTRACKING_AGI_PORT": str(free_port()),
    }
    if amqp_url:
        env["CALLTRACKING_AMQP_URL"] = amqp_url
    args = ["serve"] + (["--only", only] if only else [])
    if only and "web" not in only:
        env["CALLTRACKING_METRICS_PORT"] = str(http_port)  # /livez on the ops port
    entry = [sys.executable, "-c", "from calltracking.cli import main; main()"]
    proc = await asyncio.create_subprocess_exec(*entry, *args, env=env)
    try:
        await wait_live(http_port, proc)
        await asyncio.sleep(WARM_UP_S)
        cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
        await asyncio.sleep(seconds)
        cpu1, wall1 = cpu_seconds(proc.pid), time.monotonic()
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
    return (cpu1 - cpu0) / (wall1 - wall0)


async def main_async(args: argparse.Namespace) -> None:
    rows = []
    for only in args.only or [None]:
        with tempfile.TemporaryDirectory() as tmp:
            async with fresh_database(args.database_url) as fresh:
                url = fresh or f"sqlite+aiosqlite:///{tmp}/idle.db"
                cores = await measure(only, url, args.amqp_url, args.seconds)
        label = only or "all parts"
        print(f"idle {label}: {cores:.4f} cores over {args.seconds:.0f} s", flush=True)
        rows.append([label, "sqlite" if url.startswith("sqlite") else "postgresql", cores])
    print(f"idle_bench: {args.seconds:.0f} s each; {machine()}")
    print(table(["parts", "database", "cores used"], [[a, b, f"{c:.4f}"] for a, b, c in rows]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--only", nargs="*", help="part sets to measure one after another, e.g. web workers,agi"
    )
    parser.add_argument(
        "--database-url",
        default="",
        help="a PostgreSQL server (postgresql+asyncpg://...): each measurement gets a new "
        "database on it; default: a fresh SQLite file",
    )
    parser.add_argument("--amqp-url", default="", help="needed by --only (RabbitMQ)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()

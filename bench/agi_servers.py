"""The two FastAGI servers `bench.agi_bench` measures, each run as its own child process.

- `agi`: the whole tracker as `calltracking serve` runs it (`serve.running` with every part:
  web, agi, workers; the contract's 500 ms budget per connection; the heap settled after
  startup, calltracking/heap.py), on a fresh, migrated SQLite
  file or on `--database-url` (an empty database the parent created), with one seeded site whose
  pool holds `--pool` numbers; loopback is a trusted proxy so each visitor socket's
  `X-Forwarded-For` is its own address. Ready line: `{"port", "http_port", "site", "pid"}`.
- `bare`: `asyncio.start_server` that reads the env block up to its blank line, writes one
  `200 result=1` line and closes: one request/response round trip per connection.
- `dialogue`: the tracker's own FastAGI server (`agi.server.AgiServer`, the same budget and
  watchdog) alone, with a recorder that answers every call start at once from memory: the
  contract's ten round trips (the env block, the Linkedid's `GET`, eight `SET`s) and this
  code's protocol work, without the store or any other part. What the whole tracker could reach
  if its call starts cost nothing.
Ready line: `{"port", "pid"}`; each serves until stdin closes or `--max-seconds` pass.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
from datetime import datetime
from itertools import count
from pathlib import Path

from agi.server import AgiServer
from bench.common import LOOPBACK, announce, quiet_logging, seed_site, until_stdin_closes
from calltracking.config import Config
from calltracking.core.kinds import AttributionKind
from calltracking.core.records import CallKey, Resolution
from calltracking.heap import settle_after_startup
from calltracking.serve import ALL_PARTS, running

PBX_ID = "pbx-bench"
MAX_SOCKETS = 100_000


async def serve_agi(max_s: float, database_url: str, pool: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-agi-") as tmp:
        config = Config(
            database_url=database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'ct.db'}",
            http_host=LOOPBACK,
            http_port=0,
            agi_host=LOOPBACK,
            agi_port=0,
            pbx_id=PBX_ID,
            recordings_dir=Path(tmp),
            ws_max_per_address=MAX_SOCKETS,
            trusted_proxies=(LOOPBACK,),
        )
        async with running(config, ALL_PARTS) as state:
            site = await seed_site(state.services.db, pool)
            settle_after_startup()  # as `calltracking serve` does once every part listens
            announce(
                {
                    "port": state.agi_port,
                    "http_port": state.http_port,
                    "site": site.key,
                    "pid": os.getpid(),
                }
            )
            await until_stdin_closes(max_s)


async def _bare(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        async with asyncio.timeout(5):
            await reader.readuntil(b"\n\n")
            writer.write(b"200 result=1\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, TimeoutError):
        pass  # the client went away; nothing to answer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def serve_bare(max_s: float) -> None:
    server = await asyncio.start_server(_bare, LOOPBACK, 0)
    async with server:
        announce({"port": server.sockets[0].getsockname()[1], "pid": os.getpid()})
        await until_stdin_closes(max_s)


class InstantStarter:
    """A `CallStarter` (all the FastAGI asks of the store) that answers each call start at once
    with a new call id and the attribution a leased number gets (`dynamic`, a site, utm values);
    it stores nothing."""

    def __init__(self) -> None:
        self._ids = count()

    async def start_call(
        self, key: CallKey, did: str, caller: str | None, at: datetime
    ) -> Resolution:
        return Resolution(
            call_id=f"call-{next(self._ids)}",
            kind=AttributionKind.DYNAMIC,
            site_id="site-bench",
            source="google",
            medium="cpc",
            campaign="spring",
        )


async def serve_dialogue(max_s: float) -> None:
    server = AgiServer(InstantStarter(), PBX_ID, "7", LOOPBACK, 0)
    await server.start()
    try:
        announce({"port": server.port, "pid": os.getpid()})
        await until_stdin_closes(max_s)
    finally:
        await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=("agi", "bare", "dialogue"))
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--pool", type=int, default=1000)
    args = parser.parse_args()
    quiet_logging()
    if args.role == "agi":
        asyncio.run(serve_agi(args.max_seconds, args.database_url, args.pool))
    elif args.role == "dialogue":
        asyncio.run(serve_dialogue(args.max_seconds))
    else:
        asyncio.run(serve_bare(args.max_seconds))


if __name__ == "__main__":
    main()

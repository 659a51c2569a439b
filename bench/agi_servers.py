"""The two FastAGI servers `bench.agi_bench` measures, each run as its own child process.

- `agi`: the real `AgiServer` with `SqlCallRecorder` on a fresh, migrated SQLite file (the
  contract's 500 ms budget per connection, as in production).
- `bare`: `asyncio.start_server` that reads the env block up to its blank line, writes one
  `200 result=1` line and closes: one request/response round trip per connection.
Ready line: `{"port", "pid"}`; both serve until stdin closes or `--max-seconds` pass.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
from pathlib import Path

from agi.server import AgiServer
from bench.common import LOOPBACK, announce, quiet_logging, until_stdin_closes
from calltracking.store.calls import SqlCallRecorder
from calltracking.store.db import Database
from calltracking.store.migrate import migrate

PBX_ID = "pbx-bench"


async def serve_agi(max_s: float) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-agi-") as tmp:
        db = Database(f"sqlite+aiosqlite:///{Path(tmp) / 'ct.db'}")
        try:
            await migrate(db)
            server = AgiServer(SqlCallRecorder(db), PBX_ID, "7", LOOPBACK, 0)
            await server.start()
            try:
                announce({"port": server.port, "pid": os.getpid()})
                await until_stdin_closes(max_s)
            finally:
                await server.stop()
        finally:
            await db.close()


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=("agi", "bare"))
    parser.add_argument("--max-seconds", type=float, default=600.0)
    args = parser.parse_args()
    quiet_logging()
    asyncio.run(serve_agi(args.max_seconds) if args.role == "agi" else serve_bare(args.max_seconds))


if __name__ == "__main__":
    main()

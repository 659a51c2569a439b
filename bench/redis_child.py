"""A throwaway redis-server for the pools `bench.peer_bench` measures: no persistence, loopback.

Both peers keep their pool in Redis, and that Redis's CPU counts for them; a server of their own
keeps anything else using the machine's Redis out of the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from collections.abc import AsyncIterator

from bench.common import LOOPBACK

READY_S = 10.0


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def redis_server(
    host: str = LOOPBACK, port: int | None = None, password: str | None = None
) -> AsyncIterator[tuple[int, int]]:
    """A redis-server on `host` (`port`, default a free one): (port, pid)."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = port or free_port(host)
    args = ["--port", str(port), "--bind", host, "--save", "", "--appendonly", "no"]
    if password:
        args += ["--requirepass", password]
    proc = await asyncio.create_subprocess_exec(binary, *args, stdout=asyncio.subprocess.DEVNULL)
    try:
        async with asyncio.timeout(READY_S):
            while True:
                if proc.returncode is not None:
                    raise RuntimeError(f"redis-server on {host}:{port} exited")
                try:
                    _, writer = await asyncio.open_connection(host, port)
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
                writer.close()
                break
        yield port, proc.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        await proc.wait()

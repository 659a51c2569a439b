"""`calltracking serve` stopped with SIGTERM, as Docker and systemd stop it: visitor sockets are
told to reconnect elsewhere (1012), a FastAGI dialogue in flight is finished, the outbox is
flushed, and the process exits 0.

The FastAGI peer answers the server's first command only after the process logged that it is
stopping, so the dialogue provably spans the shutdown. Its 500 ms budget runs from the accept;
the peer answers within a few milliseconds of the log line."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import sqlalchemy as sa

from calltracking.pbxsim.agi_client import agi_env, env_block
from calltracking.store import schema as t
from calltracking.store.db import Database
from calltracking.store.migrate import migrate
from tests.store.seed import DESKTOP_UA, seed_site
from tests.web.harness import Tab, hello

EXIT_BOUND_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    proc: asyncio.subprocess.Process
    http_port: int
    agi_port: int
    log: list[str] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def read_log(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.log.append(line.decode(errors="replace"))
            if "calltracking.serve: stopping" in self.log[-1]:
                self.stopping.set()


@asynccontextmanager
async def serve(db_url: str) -> AsyncIterator[Served]:
    served = Served(
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "calltracking.cli",
            "serve",
            env={
                **os.environ,
                "CALLTRACKING_DATABASE_URL": db_url,
                "CALLTRACKING_HTTP_PORT": str(http_port := free_port()),
                "CALLTRACKING_AGI_PORT": str(agi_port := free_port()),
            },
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        ),
        http_port,
        agi_port,
    )
    reader = asyncio.create_task(served.read_log())
    try:
        await _until_healthy(served)
        yield served
    finally:
        if served.proc.returncode is None:
            served.proc.kill()
            await served.proc.wait()
        await reader


async def _until_healthy(served: Served) -> None:
    async with aiohttp.ClientSession() as http, asyncio.timeout(60):
        while True:
            try:
                async with http.get(f"http://127.0.0.1:{served.http_port}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            assert served.proc.returncode is None, "".join(served.log[-30:])
            await asyncio.sleep(0.1)


async def test_sigterm_sends_1012_finishes_the_agi_dialogue_flushes_the_outbox_and_exits_0(
    tmp_path: Path,
) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'ct.db'}"
    db = Database(db_url)
    await migrate(db)
    site = await seed_site(db, reserve=2)
    await db.close()
    async with serve(db_url) as served, aiohttp.ClientSession() as http:
        tab = Tab(
            await http.ws_connect(
                f"http://127.0.0.1:{served.http_port}/ws",
                headers={"Origin": "https://shop.example", "User-Agent": DESKTOP_UA},
            )
        )
        await hello(tab, site)
        number = (await tab.until_kind("dynamic"))["e164"]

        reader, writer = await asyncio.open_connection("127.0.0.1", served.agi_port)
        writer.write(_env(served.agi_port, number))
        first = (await reader.readline()).decode()
        assert first.startswith("GET FULL VARIABLE")

        served.proc.send_signal(signal.SIGTERM)
        await served.stopping.wait()
        commands = await _answer_until_closed(reader, writer)
        assert any(c.startswith("SET VARIABLE CALLTRACKING_KIND") for c in commands), commands

        assert await tab.closed_with(timeout=EXIT_BOUND_S) == 1012
        async with asyncio.timeout(EXIT_BOUND_S):
            assert await served.proc.wait() == 0

    db = Database(db_url)
    try:
        async with db.read() as conn:
            rows = (await conn.execute(sa.select(t.outbox.c.key, t.outbox.c.published_at))).all()
            calls = (await conn.execute(sa.select(t.calls.c.kind))).scalars().all()
    finally:
        await db.close()
    assert calls == ["dynamic"]
    assert [key for key, published in rows if published is None] == []
    assert {"call.started", "lease.released"} <= {key for key, _ in rows}


def _env(port: int, did: str) -> bytes:
    return env_block(
        agi_env(
            request=f"agi://127.0.0.1:{port}/calltracking",
            channel="PJSIP/trunk-00000001",
            uniqueid="1764500000.1",
            caller="+79161234567",
            context="from-trunk",
            did=did,
            args=[],
        )
    )


async def _answer_until_closed(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> list[str]:
    writer.write(b"200 result=1 (1764500000.1)\n")  # the Linkedid asked for first
    commands = []
    while line := await reader.readline():
        commands.append(line.decode().strip())
        writer.write(b"200 result=1\n")
    writer.close()
    return commands

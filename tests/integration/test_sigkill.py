"""`calltracking serve` killed with SIGKILL while visitors say hello and calls run their FastAGI
dialogues keeps every promise it made: each number a visitor was told is a committed lease of
that visitor, no number is leased twice, each call the PBX was answered for is stored exactly
once with the kind it was told, and after a restart the visitors get their numbers back."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import aiohttp
import sqlalchemy as sa

from calltracking.store import schema as t
from calltracking.store.db import Database
from calltracking.store.migrate import migrate
from calltracking.store.sites import Site
from tests.store.seed import seed_site
from tests.support.agi_channel import dial
from tests.web.harness import Tab, hello

VISITORS = 80
ORIGIN_HEADERS = {
    "Origin": "https://shop.example",
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 Safari/537.36",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def tracker(
    db_url: str, http_port: int, agi_port: int
) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {
        **os.environ,
        "CALLTRACKING_DATABASE_URL": db_url,
        "CALLTRACKING_HTTP_PORT": str(http_port),
        "CALLTRACKING_AGI_PORT": str(agi_port),
        "CALLTRACKING_WS_MAX_PER_ADDRESS": "10000",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "calltracking.cli", "serve",
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                with suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{http_port}/healthz") as response:
                        if response.status == 200:
                            break
                assert proc.returncode is None, "the tracker died at start"
                await asyncio.sleep(0.1)
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def _call(agi_port: int, did: str) -> tuple[str, str] | None:
    channel = await dial(agi_port, did)
    kind = channel.variables.get("CALLTRACKING_KIND")
    if not kind or channel.variables.get("CALLTRACKING_ERROR"):
        return None  # past its budget the PBX is told nothing it could rely on
    return channel.uniqueid, kind


async def _visitor(
    http: aiohttp.ClientSession, port: int, site: Site, told: dict[str, str]
) -> None:
    ws = await http.ws_connect(f"http://127.0.0.1:{port}/ws", headers=ORIGIN_HEADERS)
    tab = Tab(ws)
    welcome = await hello(tab, site)
    while True:
        frame = await tab.number(timeout=30)
        if frame["kind"] == "dynamic":
            told[welcome["visitor"]] = frame["e164"]
            return


async def test_a_killed_tracker_keeps_every_promise_it_made(tmp_path: Path) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'ct.db'}"
    db = Database(db_url)
    await migrate(db)
    site = await seed_site(db, reserve=VISITORS + 10, pool_max=VISITORS + 10, max_numbers=200)
    http_port, agi_port = _free_port(), _free_port()
    told: dict[str, str] = {}
    answered: dict[str, str] = {}

    stop_calling = asyncio.Event()  # besides the cancel: a loop of calls must end either way

    async def calls() -> None:
        while not stop_calling.is_set():
            for did in list(told.values()):
                with suppress(OSError):
                    result = await _call(agi_port, did)
                    if result is not None:
                        answered[result[0]] = result[1]
            await asyncio.sleep(0)

    async with tracker(db_url, http_port, agi_port) as proc, aiohttp.ClientSession() as http:
        visitors = [
            asyncio.ensure_future(_visitor(http, http_port, site, told)) for _ in range(VISITORS)
        ]
        caller = asyncio.ensure_future(calls())
        for _ in range(600):
            if len(told) >= VISITORS // 4 and len(answered) >= 5:
                break
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        stop_calling.set()
        caller.cancel()
        await asyncio.gather(caller, *visitors, return_exceptions=True)
    assert len(told) >= VISITORS // 4 and len(answered) >= 5

    async with db.read() as conn:
        leases = (await conn.execute(sa.select(t.leases))).all()
        calls_rows = (await conn.execute(sa.select(t.calls.c.linkedid, t.calls.c.kind))).all()
    held = {(row.visitor_id, row.number) for row in leases}
    assert set(told.items()) <= held  # every number told is a committed lease of that visitor
    active = [row.number for row in leases if row.ended_at is None]
    assert len(active) == len(set(active))
    stored = {row.linkedid: row.kind for row in calls_rows}
    assert len(stored) == len(calls_rows)
    for linkedid, kind in answered.items():
        assert stored.get(linkedid) == kind

    async with tracker(db_url, http_port, agi_port), aiohttp.ClientSession() as http:
        visitor, number = next(iter(told.items()))
        ws = await http.ws_connect(f"http://127.0.0.1:{http_port}/ws", headers=ORIGIN_HEADERS)
        back = Tab(ws)
        await hello(back, site, visitor=visitor)
        assert (await back.until_kind("dynamic", timeout=15))["e164"] == number
        await ws.close()
    await db.close()

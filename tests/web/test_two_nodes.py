"""Two `calltracking serve --only web` processes sharing the real PostgreSQL and RabbitMQ serve
one installation: a visitor's two tabs on two nodes see the same number, and a revocation decided
on either node reaches both."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest

from calltracking.core.kinds import AttributionKind
from calltracking.store.db import Database
from tests.store.seed import seed_site
from tests.web.harness import Tab, hello

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def node(db_url: str, amqp_url: str) -> AsyncIterator[int]:
    port = _free_port()
    env = {
        **os.environ,
        "CALLTRACKING_DATABASE_URL": db_url,
        "CALLTRACKING_AMQP_URL": amqp_url,
        "CALLTRACKING_HTTP_PORT": str(port),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "calltracking.cli",
        "serve",
        "--only",
        "web",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(150):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if proc.returncode is not None:
                    err = await proc.stderr.read() if proc.stderr else b""
                    raise AssertionError(f"node died: {err.decode()[-2000:]}")
                await asyncio.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        await proc.wait()


async def _tab(http: aiohttp.ClientSession, port: int) -> Tab:
    ws = await http.ws_connect(
        f"http://127.0.0.1:{port}/ws",
        headers={
            "Origin": "https://shop.example",
            "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 Safari/537.36",
        },
    )
    return Tab(ws)


async def test_revocation_reaches_tabs_on_both_nodes(pg_db: Database, amqp_url: str) -> None:
    site = await seed_site(pg_db, reserve=3, idle_timeout_s=3)
    async with (
        node(pg_db.url, amqp_url) as port_a,
        node(pg_db.url, amqp_url) as port_b,
        aiohttp.ClientSession() as http,
    ):
        on_a = await _tab(http, port_a)
        welcome = await hello(on_a, site)
        number = (await on_a.until_kind("dynamic"))["e164"]
        on_b = await _tab(http, port_b)
        await hello(on_b, site, visitor=welcome["visitor"])
        assert (await on_b.until_kind("dynamic"))["e164"] == number
        expired_a = await on_a.until_kind("expired", timeout=15)
        expired_b = await on_b.until_kind("expired", timeout=15)
        assert expired_a["e164"] == expired_b["e164"] == site.defaults[AttributionKind.EXPIRED]
        # Activity on node B asks for the number again; node A's tab follows.
        await on_b.send({"type": "activity"})
        back_b = await on_b.until_kind("dynamic", timeout=10)
        back_a = await on_a.until_kind("dynamic", timeout=10)
        assert back_a["e164"] == back_b["e164"] == number

"""`calltracking demo` end to end without a browser: a visitor gets a dynamic number over the
websocket, the landing page's call button makes the simulated Asterisk call it, and the call is
stored through the real FastAGI and AMI listener, attributed to the visitor's source, with its
recording confirmed."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
import sqlalchemy as sa

from calltracking.config import Config
from calltracking.demo import run_demo
from calltracking.store.db import Database
from calltracking.store.schema import calls
from tests.store.seed import DESKTOP_UA
from tests.web.harness import Tab


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_call_placed_from_the_landing_page_is_stored_with_its_source(
    tmp_path: Path,
) -> None:
    port = _free_port()
    ready, stop = asyncio.Event(), asyncio.Event()
    demo = asyncio.create_task(
        run_demo(
            Config(), port=port, data=tmp_path / "data", ready=lambda _info: ready.set(), stop=stop
        )
    )
    try:
        await asyncio.wait_for(ready.wait(), 20)
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/demo/") as response:
                page = await response.text()
            key = page.split('data-site="')[1].split('"')[0]
            ws = await http.ws_connect(
                f"{base}/ws", headers={"Origin": base, "User-Agent": DESKTOP_UA}
            )
            tab = Tab(ws)
            await tab.send(
                {
                    "type": "hello",
                    "site": key,
                    "visitor": None,
                    "tab": "t",
                    "url": f"{base}/demo/?utm_source=newsletter&utm_medium=email",
                    "referrer": "",
                }
            )
            assert (await tab.next())["type"] == "welcome"
            number = (await tab.until_kind("dynamic", timeout=10))["e164"]
            async with http.post(f"{base}/demo/call", json={"number": number}) as response:
                assert response.status == 202
                linkedid = (await response.json())["linkedid"]
            async with http.post(f"{base}/demo/call", json={"number": "nope"}) as response:
                assert response.status == 422
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'calltracking.db'}")
        try:
            row = None
            for _ in range(150):
                async with db.read() as conn:
                    row = (
                        await conn.execute(sa.select(calls).where(calls.c.linkedid == linkedid))
                    ).first()
                if row is not None and row.recording_size:
                    break
                await asyncio.sleep(0.1)
            assert row is not None
            assert row.did == number
            assert row.kind == "dynamic"
            assert row.status == "answered"
            assert row.recording_size > 44
            assert row.caller.startswith("+7916")
        finally:
            await db.close()
    finally:
        stop.set()
        await asyncio.wait_for(demo, 20)

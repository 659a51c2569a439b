"""Run the real tracker (web part) on loopback and talk to it over real websockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from calltracking.config import Config
from calltracking.serve import Running, running
from calltracking.services import Services
from calltracking.store.sites import Site
from tests.store.seed import DESKTOP_UA, seed_site

ORIGIN = "https://shop.example"


def web_config(tmp_path: Path, **overrides: Any) -> Config:
    values: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'ct.db'}",
        "http_port": 0,
        "admin_token": "admin-secret",
        "recordings_dir": tmp_path,
        # Site owners' servers in these tests listen on loopback (webhook targets among them).
        "webhook_allow_private": True,
    }
    values.update(overrides)
    return Config(**values)


def fast(services: Services) -> None:
    services.sweep_interval_s = 0.05


@asynccontextmanager
async def tracker(config: Config) -> AsyncIterator[Running]:
    async with running(config, ["web"], tweak=fast) as state:
        yield state


async def make_site(state: Running, **settings: Any) -> Site:
    return await seed_site(state.services.db, **settings)


@dataclass
class Tab:
    ws: aiohttp.ClientWebSocketResponse
    frames: list[dict[str, Any]] = field(default_factory=list)

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise AssertionError(f"expected a text frame, got {msg.type} {msg.data!r}")
        frame: dict[str, Any] = json.loads(msg.data)
        self.frames.append(frame)
        return frame

    async def number(self, timeout: float = 5.0) -> dict[str, Any]:
        while True:
            frame = await self.next(timeout)
            if frame["type"] == "number":
                return frame

    async def until_kind(self, kind: str, timeout: float = 8.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.number(timeout)
                if frame["kind"] == kind:
                    return frame

    async def closed_with(self, timeout: float = 5.0) -> int | None:
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                if msg.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.CLOSING,
                ):
                    return self.ws.close_code
                if msg.type is aiohttp.WSMsgType.ERROR:
                    return self.ws.close_code

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(frame))


@asynccontextmanager
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


async def open_tab(
    http: aiohttp.ClientSession,
    state: Running,
    *,
    origin: str = ORIGIN,
    user_agent: str = DESKTOP_UA,
    headers: dict[str, str] | None = None,
) -> Tab:
    ws = await http.ws_connect(
        f"http://127.0.0.1:{state.http_port}/ws",
        headers={"Origin": origin, "User-Agent": user_agent, **(headers or {})},
    )
    return Tab(ws)


async def hello(
    tab: Tab,
    site: Site,
    *,
    visitor: str | None = None,
    url: str = "https://shop.example/",
    referrer: str = "",
    **extra: Any,
) -> dict[str, Any]:
    await tab.send(
        {
            "type": "hello",
            "site": site.key,
            "visitor": visitor,
            "tab": "t",
            "url": url,
            "referrer": referrer,
            "ga": None,
            "ga_session": None,
            "ga_cookies": None,
            "ym": None,
            **extra,
        }
    )
    welcome = await tab.next()
    assert welcome["type"] == "welcome", welcome
    return welcome

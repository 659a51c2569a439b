"""A scripted stand-in for the tracker, to test web/static/snippet.js on its own in a browser.

Rules: it serves one test page (`/page`) and the real snippet file (`/snippet.js`) on 127.0.0.1,
answers each hello on `/ws` with the frames the test scripted (contract server frames, or a close
code), and records every client frame in arrival order with its connection number. It knows
nothing of leases or sites: the real server is tested against the snippet elsewhere.
"""

from __future__ import annotations

import asyncio
import html
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

SNIPPET = Path(__file__).resolve().parents[2] / "web" / "static" / "snippet.js"
SITE_KEY = "site-key-1"
ORIGINAL_E164 = "+74951110001"
ORIGINAL_DISPLAY = "+7 (495) 111-00-01"

Frame = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Received:
    connection: int  # 1 for the first socket the peer accepted, 2 for the next, ...
    frame: Frame
    at: float  # the peer loop's time


@dataclass(slots=True)
class Script:
    """What the peer answers to a hello: these frames in order, then the close code if any."""

    replies: list[Frame] = field(default_factory=list)
    close_code: int | None = None
    # Mint a visitor as the server does: a hello without one gets "v-<connection>" in its welcome.
    mint: bool = False


@dataclass(slots=True)
class Page:
    body: str
    head: str = ""  # inline markup before the snippet (stubs for gtag, ym, ...)
    attrs: dict[str, str] = field(default_factory=dict)  # the snippet tag's data-* attributes
    src: str | None = None  # the snippet's src; None: this peer's /snippet.js


def welcome(visitor: str = "v-1", **extra: Any) -> Frame:
    return {"type": "welcome", "visitor": visitor, "session": "s-1", **extra}


def number(e164: str | None, display: str | None, kind: str = "dynamic") -> Frame:
    return {"type": "number", "kind": kind, "e164": e164, "display": display}


class SnippetPeer:
    def __init__(self, page: Page, script: Script | None = None) -> None:
        self.page = page
        self.script = script or Script()
        self.received: list[Received] = []
        self.connections = 0
        self._sockets: dict[int, web.WebSocketResponse] = {}
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def page_url(self) -> str:
        return f"{self.base}/page"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/page", self._page)
        app.router.add_get("/snippet.js", self._snippet)
        app.router.add_get("/ws", self._ws)
        app.on_shutdown.append(self._close_sockets)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def frames(self, kind: str | None = None, connection: int | None = None) -> list[Frame]:
        return [
            r.frame
            for r in self.received
            if (kind is None or r.frame.get("type") == kind)
            and (connection is None or r.connection == connection)
        ]

    async def wait_for(self, ready: Callable[[], bool], seconds: float = 5.0) -> None:
        try:
            async with asyncio.timeout(seconds):
                while not ready():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"peer waited {seconds}s; received {self.frames()}") from None

    async def wait_frames(self, kind: str, count: int = 1, seconds: float = 5.0) -> list[Frame]:
        await self.wait_for(lambda: len(self.frames(kind)) >= count, seconds)
        return self.frames(kind)

    async def send_all(self, frame: Frame) -> None:
        for ws in list(self._sockets.values()):
            await ws.send_json(frame)

    async def close_all(self, code: int) -> None:
        for ws in list(self._sockets.values()):
            await ws.close(code=code)

    async def _page(self, request: web.Request) -> web.Response:
        src = self.page.src or f"{self.base}/snippet.js"
        attrs = "".join(
            f' data-{name}="{html.escape(value)}"' for name, value in self.page.attrs.items()
        )
        markup = (
            '<!doctype html><html><head><meta charset="utf-8"><title>snippet test</title>'
            f"{self.page.head}</head><body>{self.page.body}"
            f'<script src="{html.escape(src)}" data-site="{SITE_KEY}"{attrs} async></script>'
            "</body></html>"
        )
        return web.Response(text=markup, content_type="text/html")

    async def _snippet(self, request: web.Request) -> web.Response:
        return web.Response(text=SNIPPET.read_text(), content_type="application/javascript")

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        connection = self.connections
        self._sockets[connection] = ws
        try:
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    break
                frame = json.loads(message.data)
                self._record(connection, frame)
                if frame.get("type") == "hello":
                    await self._answer(ws, connection, frame)
        finally:
            self._sockets.pop(connection, None)
            self._changed.set()
        return ws

    def _record(self, connection: int, frame: Frame) -> None:
        now = asyncio.get_running_loop().time()
        self.received.append(Received(connection, frame, now))
        self._changed.set()

    async def _answer(self, ws: web.WebSocketResponse, connection: int, hello: Frame) -> None:
        for reply in self.script.replies:
            if self.script.mint and reply.get("type") == "welcome":
                reply = {**reply, "visitor": hello.get("visitor") or f"v-{connection}"}
            await ws.send_json(reply)
        if self.script.close_code is not None:
            await ws.close(code=self.script.close_code)

    async def _close_sockets(self, app: web.Application) -> None:
        for ws in list(self._sockets.values()):
            await ws.close(code=1001)

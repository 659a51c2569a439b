"""The tracker processes a soak runs against, and the visitor sockets it holds open.

Rules:
- Tracker processes are real `calltracking serve` children (`--only` parts on PostgreSQL +
  RabbitMQ, all parts in one on SQLite), stopped with SIGTERM like Docker stops them; their exit
  codes are reported, and a child that has not exited after `STOP_TIMEOUT_S` is killed.
- A visitor socket sends one hello, records the time to its first `number` frame, then reads
  (and answers pings) until it is closed; each socket is one owned task. Sockets are the lean
  client's (bench/ws_client.py): aiohttp's spent ~0.9 ms of CPU per socket opened, on the cores
  the nodes measured share with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp

from bench.common import DESKTOP_UA, LOOPBACK, ORIGIN, ROOT
from bench.ws_client import LeanSocket, WsClosed, connect
from calltracking.store.sites import Site

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
FRAME_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    name: str
    proc: asyncio.subprocess.Process
    port: int  # HTTP (web) or CALLTRACKING_METRICS_PORT (other parts)
    web: bool
    exit_code: int | None = None


@dataclass
class Nodes:
    nodes: list[Node]
    agi_port: int

    @property
    def web_ports(self) -> list[int]:
        return [n.port for n in self.nodes if n.web]


def _layout(distributed: bool) -> list[tuple[str, str | None]]:
    if not distributed:
        return [("all", None)]
    return [
        ("web1", "web"),
        ("web2", "web"),
        ("agi", "agi"),
        ("ami", "ami"),
        ("workers", "workers"),
    ]


@asynccontextmanager
async def tracker_nodes(
    env: dict[str, str],
    distributed: bool,
    agi_port: int,
    layout: list[tuple[str, str | None]] | None = None,
) -> AsyncIterator[Nodes]:
    """Start the nodes of `layout` ((name, `--only` part or None for all parts); by default
    one all-in-one node, or `distributed`: two web nodes and one of each other part)."""
    nodes: list[Node] = []
    try:
        for name, only in layout or _layout(distributed):
            port = free_port()
            node_env = {
                **os.environ,
                **env,
                "CALLTRACKING_AGI_PORT": str(agi_port),
                "CALLTRACKING_HTTP_PORT": str(port),
                "CALLTRACKING_METRICS_PORT": str(port),
            }
            args = ["serve"] + (["--only", only] if only else [])
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "calltracking.cli", "--log-level", "WARNING", *args,
                cwd=ROOT, env=node_env, stdin=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            nodes.append(Node(name, proc, port, only in (None, "web")))
        await asyncio.gather(*(_until_live(node) for node in nodes))
        yield Nodes(nodes, agi_port)
    finally:
        await asyncio.gather(*(_stop(node) for node in nodes))


async def _until_live(node: Node) -> None:
    async with aiohttp.ClientSession() as http, asyncio.timeout(READY_TIMEOUT_S):
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://{LOOPBACK}:{node.port}/livez") as response:
                    if response.status == 200:
                        return
            if node.proc.returncode is not None:
                raise RuntimeError(f"{node.name} exited with {node.proc.returncode}")
            await asyncio.sleep(0.2)


async def _stop(node: Node) -> None:
    if node.proc.returncode is None:
        node.proc.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(STOP_TIMEOUT_S):
            node.exit_code = await node.proc.wait()
    except TimeoutError:
        node.proc.kill()
        await node.proc.wait()
        node.exit_code = None  # did not stop by itself


async def scrape(port: int) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://{LOOPBACK}:{port}/metrics") as response,
    ):
        return await response.text()


@dataclass
class Visitor:
    task: asyncio.Task[None]
    shown: str | None = None  # the e164 of its last dynamic number


@dataclass
class Sockets:
    """Visitor sockets spread over the web nodes' ports, round robin."""

    site: Site
    ports: list[int]
    opening: asyncio.Semaphore
    open: dict[int, Visitor] = field(default_factory=dict)
    hello_ms: list[float] = field(default_factory=list)
    failed: int = 0
    closed_by_server: int = 0
    # Each socket from its own address (`X-Forwarded-For`, for nodes that trust loopback's):
    # otherwise the per-address cap, not the pool, decides who gets a number.
    own_addresses: bool = False
    # One site per port (the same order): each node's sockets to a site of their own.
    sites: list[Site] | None = None
    _next: int = 0

    async def open_many(self, count: int, wait: bool = True) -> None:
        """Open `count` sockets; with `wait`, return once each has its number or gave up."""
        await asyncio.gather(*(self.open_one(wait) for _ in range(count)))

    async def open_one(self, wait: bool = True) -> None:
        key, self._next = self._next, self._next + 1
        ready = asyncio.get_running_loop().create_future()
        visitor = Visitor(asyncio.create_task(self._run(key, ready), name=f"visitor-{key}"))
        self.open[key] = visitor
        if wait:
            # Ready once it has its number or gave up; a socket closed while opening ends too.
            await asyncio.wait({ready, visitor.task}, return_when=asyncio.FIRST_COMPLETED)

    async def close_random(self, count: int, rng: random.Random) -> None:
        for key in rng.sample(sorted(self.open), min(count, len(self.open))):
            await self._close(key)

    async def close_all(self) -> None:
        await asyncio.gather(*(self._close(key) for key in list(self.open)))

    def leased_numbers(self) -> list[str]:
        return [v.shown for v in self.open.values() if v.shown]

    async def _close(self, key: int) -> None:
        visitor = self.open.pop(key, None)
        if visitor is not None:
            visitor.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await visitor.task

    async def _run(self, key: int, ready: asyncio.Future[None]) -> None:
        port = self.ports[key % len(self.ports)]
        await self.opening.acquire()  # held from the handshake to the first number
        try:
            headers = {"Origin": ORIGIN, "User-Agent": DESKTOP_UA}
            if self.own_addresses:
                headers["X-Forwarded-For"] = f"10.{key >> 16 & 255}.{key >> 8 & 255}.{key & 255}"
            ws = await connect(LOOPBACK, port, "/ws", headers)
        except OSError:  # WsClosed is a ConnectionError
            self.opening.release()
            self._give_up(key, ready)
            return
        try:
            try:
                sent = time.perf_counter()
                site = self.sites[key % len(self.ports)] if self.sites else self.site
                ws.send_text(json.dumps({"type": "hello", "site": site.key}))
                await self._first_number(ws, key, sent)
            except (OSError, TimeoutError, ValueError):
                self._give_up(key, ready)
                return
            finally:
                self.opening.release()
            ready.set_result(None)
            with contextlib.suppress(WsClosed):
                while True:
                    self._on_frame(key, await ws.receive_text())
            self.closed_by_server += 1
            self.open.pop(key, None)
        finally:
            ws.close()

    def _give_up(self, key: int, ready: asyncio.Future[None]) -> None:
        self.failed += 1
        self.open.pop(key, None)
        ready.set_result(None)

    async def _first_number(self, ws: LeanSocket, key: int, sent: float) -> None:
        async with asyncio.timeout(FRAME_TIMEOUT_S):
            while True:
                if self._on_frame(key, await ws.receive_text()) == "number":
                    self.hello_ms.append((time.perf_counter() - sent) * 1000)
                    return

    def _on_frame(self, key: int, text: str) -> str | None:
        frame = json.loads(text)
        if frame.get("type") == "number" and key in self.open:
            self.open[key].shown = frame["e164"] if frame.get("kind") == "dynamic" else None
        return str(frame.get("type"))

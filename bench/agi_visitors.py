"""Visitors coming and going on the tracker's web port while `bench.agi_bench` places calls.

Each visitor is one websocket from its own address (`X-Forwarded-For`, the tracker trusts
loopback as a proxy): hello, then it keeps the socket and follows its `number` frames. `churn`
keeps `target` visitors open and replaces `per_s` of them a second with new ones, so leases are
assigned and released all along; `leased()` are the dynamic numbers the open ones show now,
which the calls go to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import Counter

import aiohttp

from bench.common import DESKTOP_UA, LOOPBACK, ORIGIN
from bench.ws_bench import hello_frame

TICK_S = 0.1
FRAME_TIMEOUT_S = 30.0


class Visitors:
    def __init__(self, http: aiohttp.ClientSession, port: int, site: str) -> None:
        self._http = http
        self._url = f"http://{LOOPBACK}:{port}/ws"
        self._hello = hello_frame(site)
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._shown: dict[int, str] = {}
        self._next = 0
        self.opened = 0
        self.failed: Counter[str] = Counter()  # by the error's type

    def leased(self) -> list[str]:
        return list(self._shown.values())

    async def open_many(self, count: int) -> None:
        readies = [self._open_one() for _ in range(count)]
        await asyncio.gather(*readies)

    async def churn(self, target: int, per_s: float, stop: asyncio.Event) -> None:
        """Keep `target` open, replacing `per_s` a second, until `stop`."""
        rng = random.Random(7)
        owed = 0.0
        while not stop.is_set():
            owed += per_s * TICK_S
            swap, owed = int(owed), owed - int(owed)
            for key in rng.sample(sorted(self._tasks), min(swap, len(self._tasks))):
                await self._close(key)
            # New visitors replace those that left, never more: no hello storm after failures.
            missing = min(swap, max(0, target - len(self._tasks)))
            await asyncio.gather(*(self._open_one() for _ in range(missing)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TICK_S)

    async def close_all(self) -> None:
        for key in list(self._tasks):
            await self._close(key)

    async def _open_one(self) -> None:
        key, self._next = self._next, self._next + 1
        ready = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._run(key, ready), name=f"visitor-{key}")
        self._tasks[key] = task
        await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)

    async def _close(self, key: int) -> None:
        task = self._tasks.pop(key, None)
        self._shown.pop(key, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, key: int, ready: asyncio.Future[None]) -> None:
        address = f"10.{key >> 16 & 255}.{key >> 8 & 255}.{key & 255}"
        headers = {"Origin": ORIGIN, "User-Agent": DESKTOP_UA, "X-Forwarded-For": address}
        try:
            async with self._http.ws_connect(self._url, headers=headers) as ws:
                await ws.send_str(self._hello)
                async with asyncio.timeout(FRAME_TIMEOUT_S):
                    while not self._follow(key, await ws.receive()):
                        pass
                self.opened += 1
                ready.set_result(None)
                async for msg in ws:
                    self._follow(key, msg)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            self.failed[type(exc).__name__] += 1
        finally:
            self._shown.pop(key, None)
            self._tasks.pop(key, None)
            if not ready.done():
                ready.set_result(None)

    def _follow(self, key: int, msg: aiohttp.WSMessage) -> bool:
        """Note a `number` frame; True when it was one."""
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise ValueError(f"socket ended: {msg.type.name}")
        frame = json.loads(msg.data)
        if frame.get("type") != "number":
            return False
        if frame.get("kind") == "dynamic":
            self._shown[key] = str(frame["e164"])
        else:
            self._shown.pop(key, None)
        return True

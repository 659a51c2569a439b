"""Where the outbox relay runs among real `calltracking serve` processes on PostgreSQL and
RabbitMQ: a web node relays while it is alone, stands aside once a workers process is up, and
the other nodes' changes still reach its tabs through the workers' relay (bus/broadcast.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
import pytest

from calltracking.core.kinds import AttributionKind
from calltracking.store.db import Database
from tests.store.seed import seed_site
from tests.web.harness import hello
from tests.web.test_two_nodes import _free_port, _tab

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

RELAYING = "outbox relay: active (lock held)"
STOOD_ASIDE = "outbox relay: a preferred process is up; standing aside for it"


@dataclass
class Process:
    """A `serve --only <part>` child and the log lines it wrote so far."""

    proc: asyncio.subprocess.Process
    port: int  # HTTP: the web part's, else CALLTRACKING_METRICS_PORT's (/metrics on both)
    lines: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def logged(self, text: str, within_s: float = 20.0) -> bool:
        """Whether the process logs a line with `text` within `within_s`."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s):
                while not any(text in line for line in self.lines):
                    self.changed.clear()
                    await self.changed.wait()
                return True
        return False


@asynccontextmanager
async def serving(part: str, db_url: str, amqp_url: str) -> AsyncIterator[Process]:
    port = _free_port()
    env = {
        **os.environ,
        "CALLTRACKING_DATABASE_URL": db_url,
        "CALLTRACKING_AMQP_URL": amqp_url,
        "CALLTRACKING_HTTP_PORT" if part == "web" else "CALLTRACKING_METRICS_PORT": str(port),
    }
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "calltracking.cli", "serve", "--only", part),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    process = Process(proc, port)

    async def read() -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            process.lines.append(line.decode(errors="replace"))
            process.changed.set()
        process.changed.set()

    reader = asyncio.create_task(read())
    try:
        # serve logs it once the port is bound
        listening = "web listening on" if part == "web" else "health and metrics on"
        assert await process.logged(listening), "".join(process.lines[-30:])
        yield process
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader, 5)


async def test_web_nodes_leave_the_relay_to_a_workers_process_and_still_get_its_events(
    pg_db: Database, amqp_url: str
) -> None:
    site = await seed_site(pg_db, reserve=3, idle_timeout_s=3)
    async with contextlib.AsyncExitStack() as stack:
        node_a = await stack.enter_async_context(serving("web", pg_db.url, amqp_url))
        node_b = await stack.enter_async_context(serving("web", pg_db.url, amqp_url))
        http = await stack.enter_async_context(aiohttp.ClientSession())
        web_nodes = (node_a, node_b)
        # Alone, one of the web nodes relays (they take turns by the relay's lock).
        first = [asyncio.create_task(node.logged(RELAYING)) for node in web_nodes]
        await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED, timeout=20)
        for task in first:
            task.cancel()
        relaying = [node for node in web_nodes if any(RELAYING in line for line in node.lines)]
        assert len(relaying) == 1
        workers = await stack.enter_async_context(serving("workers", pg_db.url, amqp_url))
        assert await relaying[0].logged(STOOD_ASIDE), "".join(relaying[0].lines[-15:])
        assert await workers.logged(RELAYING), "".join(workers.lines[-15:])

        # A revocation decided by the site's owner reaches the visitor's tab on the other
        # node: its event now leaves through the workers process's relay.
        on_a = await _tab(http, node_a.port)
        welcome = await hello(on_a, site)
        number = (await on_a.until_kind("dynamic"))["e164"]
        on_b = await _tab(http, node_b.port)
        await hello(on_b, site, visitor=welcome["visitor"])
        assert (await on_b.until_kind("dynamic"))["e164"] == number
        expired_a = await on_a.until_kind("expired", timeout=15)
        expired_b = await on_b.until_kind("expired", timeout=15)
        assert expired_a["e164"] == expired_b["e164"] == site.defaults[AttributionKind.EXPIRED]
        await asyncio.sleep(2.5)  # two more checks: the web nodes stay out
        assert not [n for n in web_nodes if sum(RELAYING in x for x in n.lines) > 1]
        relaying_now = [await _relaying(http, p.port) for p in (node_a, node_b, workers)]
        assert relaying_now == [0.0, 0.0, 1.0]


async def _relaying(http: aiohttp.ClientSession, port: int) -> float:
    """The process's `calltracking_outbox_relaying` gauge, from its /metrics."""
    async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    (line,) = [x for x in text.splitlines() if x.startswith("calltracking_outbox_relaying ")]
    return float(line.split()[1])

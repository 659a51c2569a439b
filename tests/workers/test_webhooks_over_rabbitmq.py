"""`calltracking serve` on PostgreSQL and RabbitMQ delivers a site's lease events to its webhook.
No binding feeds the webhook queue any more: the relay copies to it the events a webhook may
want (bus/rabbit.py, "Routed queues"), so this is what proves the serve process wires that
route, and that another site's events still reach no receiver."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from calltracking.core.settings import Analytics, WebhookTarget
from calltracking.serve import running
from calltracking.store.db import Database
from tests.store.seed import seed_site
from tests.web.harness import ORIGIN, fast, hello, open_tab, session, web_config

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]

SECRET = "whsec-0123456789abcdef"
PLAIN_ORIGIN = "https://plain.example"


async def test_a_sites_lease_events_reach_its_webhook_and_no_other_sites_do(
    pg_db: Database, amqp_url: str, tmp_path: Path
) -> None:
    received: list[dict[str, Any]] = []
    arrived = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        received.append(json.loads(await request.read()))
        arrived.set()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hooks", hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        target = WebhookTarget(str(server.make_url("/hooks")), ("lease.*",), SECRET)
        hooked = await seed_site(pg_db, analytics=Analytics(webhooks=(target,)))
        plain = await seed_site(pg_db, name="plain", domains=("plain.example",), defaults_base=8000)
        config = web_config(tmp_path, database_url=pg_db.url, amqp_url=amqp_url)
        async with running(config, ["web", "workers"], tweak=fast) as state, session() as http:
            # The site without a webhook first: its events are published before the hooked one's.
            for site, origin in ((plain, PLAIN_ORIGIN), (hooked, ORIGIN)):
                tab = await open_tab(http, state, origin=origin)
                await hello(tab, site, url=f"{origin}/")
                await tab.until_kind("dynamic")
            async with asyncio.timeout(20):
                while not any(envelope["event"] == "lease.assigned" for envelope in received):
                    arrived.clear()
                    await arrived.wait()
    finally:
        await server.close()
    assert {envelope["data"]["site_id"] for envelope in received} == {hooked.id}

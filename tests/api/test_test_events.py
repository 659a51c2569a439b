"""`POST /api/v1/sites/{id}/test-event` sends one event through the exporters' senders to stand-in
GA4, Metrika and webhook servers on 127.0.0.1, and reports what each answered."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from calltracking.exporters.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from calltracking.services import Services
from tests.api.conftest import Api, serving


@dataclasses.dataclass
class Peer:
    base: str
    seen: list[tuple[str, Any, dict[str, str]]]
    status: int = 204


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    found = Peer("", [])

    async def collect(request: web.Request) -> web.Response:
        found.seen.append(("ga4", await request.json(), dict(request.query)))
        return web.Response(status=found.status)

    async def upload(request: web.Request) -> web.Response:
        form = await request.post()
        file = form["file"]
        assert isinstance(file, web.FileField)
        found.seen.append(("metrika", file.file.read().decode(), dict(request.query)))
        return web.json_response({"uploading": {"id": "77", "status": "UPLOADED"}})

    async def hook(request: web.Request) -> web.Response:
        found.seen.append(("webhook", await request.read(), dict(request.headers)))
        return web.Response(status=found.status)

    app = web.Application()
    app.router.add_post("/mp/collect", collect)
    app.router.add_post("/management/v1/counter/{counter}/offline_conversions/upload_calls", upload)
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    found.base = f"http://127.0.0.1:{port}"
    yield found
    await runner.cleanup()


@pytest.fixture
async def api_to_peer(tmp_path: Path, peer: Peer) -> AsyncIterator[Api]:
    def endpoints(services: Services) -> None:
        services.config = dataclasses.replace(
            services.config,
            ga4_endpoint=peer.base,
            metrika_endpoint=peer.base,
            webhook_allow_private=True,  # the peer listens on loopback
        )

    async with serving(tmp_path, endpoints) as client:
        yield client


async def test_a_test_event_reaches_each_configured_target(api_to_peer: Api, peer: Peer) -> None:
    api = api_to_peer
    _, token = await api.account()
    analytics = {
        "ga4": {"measurement_id": "G-TEST", "api_secret": "s3cret"},
        "metrika": {"counter_id": "123", "token": "ym-token"},
        "webhooks": [{"url": f"{peer.base}/hook", "events": ["call.ended"], "secret": "whs"}],
    }
    site = await api.site(token, analytics=analytics)
    url = f"/api/v1/sites/{site['id']}/test-event"

    answer = await api.ok("POST", url, token, json={"target": "ga4"})
    assert (answer["ok"], answer["outcome"]) == (True, "sent")
    kind, payload, query = peer.seen[-1]
    assert kind == "ga4" and query == {"measurement_id": "G-TEST", "api_secret": "s3cret"}
    assert payload["events"][0]["name"] == "calltracking_test"
    assert payload["events"][0]["params"]["debug_mode"] == 1
    assert "s3cret" not in answer["detail"]

    answer = await api.ok("POST", url, token, json={"target": "metrika"})
    assert answer["ok"] is True and "upload 77" in answer["detail"]
    kind, csv_text, query = peer.seen[-1]
    assert kind == "metrika" and "1000000000000000000" in csv_text
    assert query["comment"] == "calltracking test event"

    answer = await api.ok("POST", url, token, json={"target": "webhook", "index": 0})
    assert answer["ok"] is True
    kind, body, headers = peer.seen[-1]
    assert kind == "webhook" and b'"test"' in body
    now = datetime.fromtimestamp(int(headers[TIMESTAMP_HEADER]), UTC)
    assert verify("whs", headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], body, now)

    peer.status = 403
    answer = await api.ok("POST", url, token, json={"target": "ga4"})
    assert (answer["ok"], answer["outcome"]) == (False, "failed")
    assert "403" in answer["detail"]


async def test_a_target_the_site_lacks_is_refused_at_its_field(api: Api) -> None:
    _, token = await api.account()
    _, other_token = await api.account("other")
    site = await api.site(token)
    url = f"/api/v1/sites/{site['id']}/test-event"
    for body, field in (
        ({"target": "ga4"}, "target"),
        ({"target": "smoke"}, "target"),
        ({"target": "webhook", "index": 3}, "index"),
        ({}, "target"),
    ):
        status, answer = await api.req("POST", url, token, json=body)
        assert (status, answer["error"]["field"]) == (422, field), body
    assert (await api.req("POST", url, other_token, json={"target": "ga4"}))[0] == 404

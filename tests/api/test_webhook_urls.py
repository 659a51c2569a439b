"""A tenant cannot point a webhook at the tracker's own network through the API (a blind SSRF),
unless the operator allows private targets with CALLTRACKING_WEBHOOK_ALLOW_PRIVATE."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from calltracking.config import Config
from calltracking.serve import running
from tests.api.conftest import ADMIN, MONITOR, Api

HOOK = {"events": ["call.*"], "secret": "whsec-0123456789"}


@asynccontextmanager
async def tracker(tmp_path: Path, *, allow_private: bool) -> AsyncIterator[Api]:
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    config = Config(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'api.db'}",
        http_port=0,
        admin_token=ADMIN,
        recordings_dir=recordings,
        asterisk_monitor_dir=MONITOR,
        webhook_allow_private=allow_private,
    )
    async with running(config, ["web"]) as state, aiohttp.ClientSession() as session:
        yield Api(session, f"http://127.0.0.1:{state.http_port}", state.services, recordings)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/admin",
        "http://localhost:5432/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://10.0.0.8/internal",
    ],
)
async def test_a_webhook_on_an_internal_target_is_refused_with_422(
    tmp_path: Path, url: str
) -> None:
    async with tracker(tmp_path, allow_private=False) as api:
        _, token = await api.account()
        site = await api.site(token)
        status, body = await api.req(
            "PATCH",
            f"/api/v1/sites/{site['id']}",
            token,
            json={"settings": {"analytics": {"webhooks": [{**HOOK, "url": url}]}}},
        )
        assert status == 422, body
        assert "settings.analytics.webhooks[0].url" in str(body)
        stored = await api.ok("GET", f"/api/v1/sites/{site['id']}", token)
        assert stored["settings"]["analytics"]["webhooks"] == []


async def test_an_operator_may_allow_private_webhook_targets(tmp_path: Path) -> None:
    async with tracker(tmp_path, allow_private=True) as api:
        _, token = await api.account()
        site = await api.site(token)
        hook = {**HOOK, "url": "http://10.0.0.8/internal"}
        patched = await api.ok(
            "PATCH",
            f"/api/v1/sites/{site['id']}",
            token,
            json={"settings": {"analytics": {"webhooks": [hook]}}},
        )
        assert [w["url"] for w in patched["settings"]["analytics"]["webhooks"]] == [hook["url"]]

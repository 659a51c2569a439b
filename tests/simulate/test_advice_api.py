"""Advice from a site's own stored traffic, through the real API on a real database.

The traffic, worked by hand: the pool may hold 2 numbers. Visitors A, B, C arrive a minute
apart two hours ago and stay (their tabs never close): A and B get numbers, C finds the pool
exhausted and is shown `untracked`. C calls the untracked number at +5 min, A its own number at
+10 min. Replayed at the pool of 2: C's call is untracked, 50% tracked. With 3 numbers both
calls are tracked (100%, both correct), and no smaller pool reaches 95%, whatever the other
settings tried."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from calltracking.services import Services
from calltracking.store.queries.site_traffic import load_site_facts
from tests.api.conftest import Api, numbers, serving, visitor


def no_sweeping(services: Services) -> None:
    services.sweep_interval_s = 3600.0  # seeded visitors keep their leases


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with serving(tmp_path, no_sweeping) as client:
        yield client


async def test_advice_names_the_smallest_pool_reaching_the_target(api: Api) -> None:
    await api.ok("POST", "/api/v1/numbers", json={"numbers": numbers(3)})
    _, token = await api.account()
    site = await api.site(token, pool_max=2)
    t0 = api.services.clock() - timedelta(hours=2)
    url = "https://shop.example/"
    n_a = await visitor(api, site["id"], t0, url)
    await visitor(api, site["id"], t0 + timedelta(minutes=1), url)
    n_c = await visitor(api, site["id"], t0 + timedelta(minutes=2), url)
    assert n_c == site["defaults"]["untracked"]
    await api.call(n_c, "+79160000003", t0 + timedelta(minutes=5))
    await api.call(n_a, "+79160000001", t0 + timedelta(minutes=10))

    answer = await api.ok("GET", f"/api/v1/sites/{site['id']}/advice?target=0.95&days=1", token)
    assert answer["traffic"]["visits"] == 3
    assert answer["traffic"]["calls"] == 2 and answer["traffic"]["calls_replayed"] == 2
    assert answer["current"]["pool"] == 2
    assert answer["current"]["tracked_share"] == 0.5
    advice = answer["advice"]
    assert advice["reached"] is True
    assert (advice["pool"], advice["tracked_share"], advice["correct_share"]) == (3, 1.0, 1.0)
    assert any("attributed" in limit for limit in answer["limits"])

    async with api.services.db.read() as conn:  # a busy site: only the latest visits replayed
        cut = await load_site_facts(
            conn, site["id"], t0 - timedelta(hours=1), api.services.clock(), max_visits=2
        )
    assert cut.truncated and cut.since == t0 + timedelta(minutes=1)
    assert [v.started_at for v in cut.facts.visits] == [t0 + timedelta(minutes=m) for m in (1, 2)]


@pytest.mark.parametrize(
    ("query", "field"),
    [("target=2", "target"), ("target=x", "target"), ("days=0", "days"), ("days=1.5", "days")],
)
async def test_bad_advice_queries_are_refused_with_422(api: Api, query: str, field: str) -> None:
    _, token = await api.account()
    site = await api.site(token)
    status, body = await api.req("GET", f"/api/v1/sites/{site['id']}/advice?{query}", token)
    assert status == 422
    assert body["error"]["code"] == "invalid" and field in body["error"]["message"]


async def test_another_accounts_site_has_no_advice(api: Api) -> None:
    _, token = await api.account()
    site = await api.site(token)
    _, other = await api.account("other")
    status, _ = await api.req("GET", f"/api/v1/sites/{site['id']}/advice", other)
    assert status == 404


async def test_the_advise_command_reads_the_same_store(api: Api, tmp_path: Path) -> None:
    await api.ok("POST", "/api/v1/numbers", json={"numbers": numbers(2)})
    _, token = await api.account()
    site = await api.site(token, pool_max=1)
    t0 = api.services.clock() - timedelta(hours=1)
    n_a = await visitor(api, site["id"], t0, "https://shop.example/")
    n_b = await visitor(api, site["id"], t0 + timedelta(minutes=1), "https://shop.example/")
    await api.call(n_a, "+79160000001", t0 + timedelta(minutes=3))
    await api.call(n_b, "+79160000002", t0 + timedelta(minutes=4))
    env = {**os.environ, "CALLTRACKING_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'api.db'}"}
    command = [sys.executable, "-m", "calltracking.cli", "advise", site["id"], "--target", "0.9"]
    done = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["current"]["tracked_share"] == 0.5  # b waited on untracked
    assert (answer["advice"]["pool"], answer["advice"]["reached"]) == (2, True)
    missing = await asyncio.to_thread(
        subprocess.run, [*command[:4], "nope"], capture_output=True, text=True, env=env,
        timeout=120, check=False,
    )  # fmt: skip
    assert missing.returncode == 1
    assert missing.stderr.strip() == "calltracking advise: site nope does not exist"

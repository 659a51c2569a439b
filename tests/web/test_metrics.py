"""/metrics over real sockets: the Prometheus exposition, the histograms the call sites feed, the
database-wide figures, and independence of the registries of two apps in one process."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from calltracking.metrics import event_lag_s
from calltracking.pbxsim.agi_client import agi_env, env_block
from calltracking.serve import running
from tests.web.harness import fast, hello, make_site, open_tab, session, tracker, web_config

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(http: aiohttp.ClientSession, port: int) -> Samples:
    async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def fastagi_dialogue(port: int, did: str) -> list[str]:
    """Play Asterisk's side of one dialogue: the env block, `200` to every command; returns the
    commands the server sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    fields = agi_env(
        request=f"agi://127.0.0.1:{port}/calltracking",
        channel="PJSIP/trunk-00000001",
        uniqueid="1700000000.1",
        caller="+79161234567",
        context="from-trunk",
        did=did,
        args=[],
    )
    writer.write(env_block(fields))
    commands = []
    while line := await reader.readline():
        command = line.decode().strip()
        commands.append(command)
        writer.write(b"200 result=1 (1700000000.1)\n" if "GET" in command else b"200 result=1\n")
    writer.close()
    return commands


async def test_a_hello_feeds_the_hello_histogram_and_the_pool_figures(tmp_path: Path) -> None:
    async with tracker(web_config(tmp_path)) as state, session() as http:
        site = await make_site(state, reserve=3)
        first = await open_tab(http, state)
        welcome = await hello(first, site)
        await first.until_kind("dynamic")
        again = await open_tab(http, state)
        await hello(again, site, visitor=welcome["visitor"])
        await again.number()
        samples = await scrape(http, state.http_port or 0)
    assert value(samples, "calltracking_hello_seconds_count") == 2
    assert value(samples, "calltracking_ws_hellos_total", visitor="new") == 1
    assert value(samples, "calltracking_ws_hellos_total", visitor="known") == 1
    assert value(samples, "calltracking_ws_tabs") == 2
    assert value(samples, "calltracking_decider_batches_total") >= 2  # one hello after the other
    assert value(samples, "calltracking_pool_numbers", state="leased") == 1
    assert value(samples, "calltracking_pool_sites_exhausted") == 0
    assert value(samples, "calltracking_metrics_db_ok") == 1
    assert value(samples, "calltracking_outbox_pending") >= 0
    for target in ("ga4", "metrika", "webhook"):
        assert value(samples, "calltracking_export_failed", target=target) == 0
    assert value(samples, "calltracking_part_up", part="web") == 1


async def test_an_exhausted_pool_is_counted_and_its_site_named(tmp_path: Path) -> None:
    async with tracker(web_config(tmp_path)) as state, session() as http:
        site = await make_site(state, reserve=1, pool_max=1, preempt_idle_s=3600, hold_s=0)
        holder = await open_tab(http, state)
        await hello(holder, site)
        await holder.until_kind("dynamic")
        waiter = await open_tab(http, state)
        await hello(waiter, site)
        assert (await waiter.number())["kind"] == "untracked"
        samples = await scrape(http, state.http_port or 0)
    assert value(samples, "calltracking_pool_sites_exhausted") == 1
    assert value(samples, "calltracking_pool_exhaustions_recent") >= 1
    assert value(samples, "calltracking_pool_exhaustions_recent_top", site=site.key) >= 1
    assert value(samples, "calltracking_pool_numbers", state="free") == 0


async def test_a_fastagi_dialogue_is_timed_and_counted(tmp_path: Path) -> None:
    config = web_config(tmp_path, agi_port=0)
    async with running(config, ["web", "agi"], tweak=fast) as state, session() as http:
        commands = await fastagi_dialogue(state.agi_port or 0, "74951110001")
        assert any(c.startswith("SET VARIABLE") for c in commands)
        samples = await scrape(http, state.http_port or 0)
    assert value(samples, "calltracking_agi_dialogue_seconds_count") == 1
    assert sum(v for (n, _), v in samples.items() if n == "calltracking_agi_dialogues_total") == 1
    assert value(samples, "calltracking_part_up", part="agi") == 1


async def test_two_apps_in_one_process_keep_separate_series(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with (
        tracker(web_config(tmp_path / "a")) as a,
        tracker(web_config(tmp_path / "b")) as b,
        session() as http,
    ):
        site = await make_site(a, reserve=1)
        tab = await open_tab(http, a)
        await hello(tab, site)
        await tab.number()
        assert value(await scrape(http, a.http_port or 0), "calltracking_hello_seconds_count") == 1
        assert value(await scrape(http, b.http_port or 0), "calltracking_hello_seconds_count") == 0


NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "received_at", "lag"),
    [
        ({"Event": "Newchannel"}, NOW - timedelta(seconds=2), 2.0),
        ({"Timestamp": f"{NOW.timestamp() - 5:.6f}"}, NOW - timedelta(seconds=1), 5.0),
        ({"Timestamp": "not a time"}, NOW - timedelta(seconds=1), 1.0),
        ({}, NOW + timedelta(seconds=1), 0.0),  # a clock ahead never gives a negative lag
    ],
)
def test_ami_event_lag_prefers_asterisks_timestamp(
    headers: dict[str, str], received_at: datetime, lag: float
) -> None:
    assert event_lag_s(headers, received_at, NOW) == pytest.approx(lag)


async def test_a_process_without_the_web_part_serves_health_and_metrics_on_its_port(
    tmp_path: Path,
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    config = web_config(tmp_path, agi_port=0, metrics_port=port)
    async with running(config, ["agi"]) as state, session() as http:
        assert state.http_port is None
        async with http.get(f"http://127.0.0.1:{port}/livez") as response:
            assert response.status == 200
        async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
            body = await response.json()
            assert response.status == 200 and body["parts"] == {"agi": True, "database": True}
        await fastagi_dialogue(state.agi_port or 0, "74951110001")
        samples = await scrape(http, port)
    assert value(samples, "calltracking_agi_dialogue_seconds_count") == 1
    assert not any(name == "calltracking_metrics_db_ok" for name, _ in samples)

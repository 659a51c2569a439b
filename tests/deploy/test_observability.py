"""The shipped Grafana dashboard and Prometheus rules name only metrics a running tracker
exports, and the rules cover the cases an operator must act on."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from calltracking.serve import running
from tests.web.harness import fast, web_config

ROOT = Path(__file__).resolve().parents[2]
METRIC = re.compile(r"\bcalltracking_[a-z0-9_]+")


def dashboard_exprs() -> list[str]:
    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "expr" and isinstance(value, str):
                    yield value
                else:
                    yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    return list(walk(json.loads((ROOT / "deploy/grafana/calltracking.json").read_text())))


def alert_rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


async def exported_names(tmp_path: Path) -> set[str]:
    """Series and family names of /metrics from a tracker running every part (the AMI host
    refuses: the listener keeps retrying, which is enough for its series to exist)."""
    config = web_config(
        tmp_path, agi_port=0, ami_host="127.0.0.1", ami_port=1, ami_username="calltracking"
    )
    parts = ["web", "agi", "ami", "workers"]
    async with (
        running(config, parts, tweak=fast) as state,
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{state.http_port}/metrics") as response,
    ):
        text = await response.text()
    # A family may have no sample yet (the top exhausted sites when none is): its name counts.
    families = list(text_string_to_metric_families(text))
    return {f.name for f in families} | {s.name for f in families for s in f.samples}


async def test_every_metric_in_the_dashboard_and_the_rules_is_exported(tmp_path: Path) -> None:
    exprs = dashboard_exprs() + [str(rule["expr"]) for rule in alert_rules()]
    referenced = {name for expr in exprs for name in METRIC.findall(expr)}
    assert len(referenced) >= 15
    missing = referenced - await exported_names(tmp_path)
    assert not missing, f"referenced but not exported: {sorted(missing)}"


def test_the_rules_cover_what_an_operator_must_act_on() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    for needed in (
        "CalltrackingPoolExhausted",
        "CalltrackingAmiDown",
        "CalltrackingOutboxGrowing",
        "CalltrackingAgiPastBudget",
    ):
        assert needed in rules
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"], name
        assert rule["expr"].count("(") == rule["expr"].count(")"), name
    # The budget rule reads the bucket bound the contract's 500 ms budget sits on.
    assert 'le="0.5"' in rules["CalltrackingAgiPastBudget"]["expr"]


def test_dashboard_panels_each_query_prometheus() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/calltracking.json").read_text())
    assert dashboard["uid"] and dashboard["panels"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["targets"] and all(target["expr"] for target in panel["targets"])

"""The production stack's files, checked for structure since Docker does not run here: health
checks, start order, restart policies and limits, the proxy in front of both web nodes, the AMI
standby, setting names that the tracker really reads, and a slim non-root image."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from calltracking.config import PREFIX, Config

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {PREFIX + f.name.upper() for f in dataclasses.fields(Config)}
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def command(service: dict[str, Any]) -> list[str]:
    value = service.get("command", [])
    return value.split() if isinstance(value, str) else [str(word) for word in value]


def tracker_parts(service: dict[str, Any]) -> str | None:
    """`web`, `agi,ami`, ... for a `serve --only` service; `all` for a bare `serve`."""
    words = command(service)
    if "serve" not in words:
        return None
    return words[words.index("--only") + 1] if "--only" in words else "all"


def services_running(part: str) -> list[str]:
    return sorted(
        name for name, s in services().items() if (tracker_parts(s) or "").split(",") == [part]
    )


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


@pytest.mark.parametrize("name", sorted(services()))
def test_every_service_has_a_health_check(name: str) -> None:
    check = services()[name].get("healthcheck")
    assert check and not check.get("disable"), f"{name} has no health check"
    assert check["test"][0] in ("CMD", "CMD-SHELL") and check["test"] != ["NONE"]


@pytest.mark.parametrize("name", sorted(services()))
def test_every_service_has_a_restart_policy_and_resource_limits(name: str) -> None:
    service = services()[name]
    expected = "no" if name == "migrate" else "unless-stopped"
    assert service.get("restart") == expected
    limits = service["deploy"]["resources"]["limits"]
    assert limits.get("cpus") and limits.get("memory")


@pytest.mark.parametrize("name", sorted(services()))
def test_dependencies_wait_for_health_or_completion(name: str) -> None:
    depends = services()[name].get("depends_on", {})
    assert isinstance(depends, dict), f"{name}: depends_on without conditions"
    for other, rule in depends.items():
        wanted = "service_completed_successfully" if other == "migrate" else "service_healthy"
        assert rule == {"condition": wanted}, f"{name} -> {other}: {rule}"
        assert other in services()


def test_one_migration_runs_before_every_tracker_process() -> None:
    migrations = [n for n, s in services().items() if command(s)[:1] == ["migrate"]]
    assert migrations == ["migrate"]
    assert services()["migrate"]["restart"] == "no"
    trackers = [n for n, s in services().items() if tracker_parts(s)]
    assert trackers
    for name in trackers:
        assert services()[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }


def test_the_stack_runs_each_part_with_two_web_nodes_and_an_ami_standby() -> None:
    assert len(services_running("web")) == 2
    assert len(services_running("ami")) >= 2
    assert len(services_running("agi")) >= 1
    assert len(services_running("workers")) >= 1
    assert "all" not in {tracker_parts(s) for s in services().values()}
    for name in ("postgres", "rabbitmq"):
        assert services()[name]["healthcheck"]
    url = services()["web1"]["environment"]["CALLTRACKING_DATABASE_URL"]
    assert url.startswith("postgresql+asyncpg://"), "several processes need PostgreSQL"
    for name in services_running("ami"):  # the standby's fail-over needs the shared database
        assert services()[name]["environment"]["CALLTRACKING_DATABASE_URL"] == url


def test_the_web_nodes_sit_behind_the_proxy_which_they_trust() -> None:
    webs = services_running("web")
    proxy = services()["proxy"]
    mounts = [str(v).split(":") for v in proxy["volumes"]]
    conf_path = next(host for host, *_ in mounts if host.endswith("nginx.conf"))
    conf = (ROOT / conf_path).read_text()
    upstream = re.search(r"upstream\s+(\w+)\s*\{(.*?)\}", conf, re.S)
    assert upstream is not None
    servers = re.findall(r"^\s*server\s+([\w.-]+):(\d+)", upstream.group(2), re.M)
    assert sorted(host for host, _ in servers) == webs
    assert {port for _, port in servers} == {"8080"}
    assert conf.count(f"proxy_pass http://{upstream.group(1)};") >= 2
    for header in ("Upgrade $http_upgrade", "Connection $connection_upgrade"):
        assert f"proxy_set_header {header};" in conf
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in conf
    proxy_address = proxy["networks"]["backend"]["ipv4_address"]
    for name in webs:
        assert "ports" not in services()[name], f"{name} must be reached through the proxy"
        trusted = services()[name]["environment"]["CALLTRACKING_TRUSTED_PROXIES"].split(",")
        assert proxy_address in trusted
    assert set(proxy["depends_on"]) == set(webs)


def test_setting_names_in_compose_and_env_example_are_read_by_the_tracker() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\b(CALLTRACKING_[A-Z0-9_]+)\b", text))
    example = env_example()
    used |= {name for name in example if name.startswith(PREFIX)}
    assert used and used <= SETTINGS, f"not tracker settings: {sorted(used - SETTINGS)}"
    for service in services().values():
        for name in service.get("environment", {}) or {}:
            assert not name.startswith(PREFIX) or name in SETTINGS, name


def test_every_variable_compose_interpolates_is_in_env_example() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    assert {"POSTGRES_PASSWORD", "RABBITMQ_PASSWORD"} <= required
    assert set(INTERPOLATION.findall(text)) <= set(env_example())


def test_the_image_is_multi_stage_slim_and_runs_as_a_user() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    stages = [i for i, line in enumerate(lines) if line.upper().startswith("FROM ")]
    assert len(stages) >= 2
    final = lines[stages[-1] :]
    assert "slim" in final[0] or "alpine" in final[0] or "distroless" in final[0]
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    copies = [line for line in final if line.upper().startswith("COPY ")]
    assert copies and all("--from=" in line for line in copies), "the final stage copies builds"
    assert not any(re.match(r"COPY\s+\.\s", line) for line in lines), "never the whole tree"
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in (".git", "tests", ".env"):
        assert path in ignored

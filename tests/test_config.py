"""Configuration: defaults from the contract, the environment over the TOML file, and one clear
line naming a bad setting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from calltracking.config import Config, ConfigError, load_config


def test_defaults_are_the_contracts() -> None:
    config = load_config({})
    assert config.database_url == "sqlite+aiosqlite:///calltracking.db"
    assert (config.http_host, config.http_port) == ("127.0.0.1", 8080)
    assert (config.agi_host, config.agi_port, config.ami_port) == ("127.0.0.1", 4573, 5038)
    assert config.trunk_contexts == ("from-trunk",)
    assert config.country_code == "7"
    assert config.ws_max_per_address == 200
    assert config.stale_call_s == 14400
    assert config.export_interval_s == 60


def test_the_environment_wins_over_the_toml_file(tmp_path: Path) -> None:
    toml = tmp_path / "ct.toml"
    toml.write_text('http_port = 9000\ntrunk_contexts = ["a", "b"]\npbx_id = "pbx1"\n')
    config = load_config({"CALLTRACKING_HTTP_PORT": "9100", "OTHER": "x"}, toml)
    assert config.http_port == 9100
    assert config.trunk_contexts == ("a", "b")
    assert config.pbx_id == "pbx1"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CALLTRACKING_HTTP_PORT": "eighty"}, "CALLTRACKING_HTTP_PORT"),
        ({"CALLTRACKING_AGI_PORT": "70000"}, "CALLTRACKING_AGI_PORT"),
        ({"CALLTRACKING_DATABASE_URL": "mysql://x"}, "CALLTRACKING_DATABASE_URL"),
        ({"CALLTRACKING_AMQP_URL": "http://rabbit"}, "CALLTRACKING_AMQP_URL"),
        ({"CALLTRACKING_COUNTRY_CODE": "+7"}, "CALLTRACKING_COUNTRY_CODE"),
        ({"CALLTRACKING_AMI_HOST": "pbx"}, "CALLTRACKING_AMI_USERNAME"),
        ({"CALLTRACKING_STALE_CALL_S": "0"}, "CALLTRACKING_STALE_CALL_S"),
        ({"CALLTRACKING_WS_MAX_PER_ADDRESS": "0"}, "CALLTRACKING_WS_MAX_PER_ADDRESS"),
        ({"CALLTRACKING_TRUNK_CONTEXTS": " , "}, "CALLTRACKING_TRUNK_CONTEXTS"),
    ],
)
def test_a_bad_value_names_its_setting_in_one_line(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(env)
    message = str(caught.value)
    assert message.startswith(named)
    assert "\n" not in message


def test_an_unreadable_toml_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("http_port = = 1")
    with pytest.raises(ConfigError, match="--config"):
        load_config({}, bad)


def test_secrets_are_masked_in_the_startup_description() -> None:
    config = Config(
        ami_secret="s3cret", admin_token="tok", database_url="postgresql+asyncpg://u:pw@db/ct"
    )
    shown = str(config.describe())
    assert "s3cret" not in shown
    assert "tok'" not in shown
    assert ":pw@" not in shown
    assert "u:****@db" in shown


def test_the_cli_prints_one_line_and_exits_2_on_a_bad_setting() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "calltracking.cli", "migrate"],
        env={"CALLTRACKING_HTTP_PORT": "nope", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "calltracking: CALLTRACKING_HTTP_PORT: 'nope' is not a valid int"
    ]


def test_a_subset_of_parts_needs_a_broker() -> None:
    from calltracking.serve import parse_parts

    with pytest.raises(ConfigError, match="CALLTRACKING_AMQP_URL"):
        parse_parts("web", Config())
    with pytest.raises(ConfigError, match="unknown part"):
        parse_parts("web,nonsense", Config(amqp_url="amqp://x/"))
    assert parse_parts("web,agi", Config(amqp_url="amqp://x/")) == {"web", "agi"}
    assert parse_parts(None, Config()) == {"web", "agi", "ami", "workers"}


def test_help_explains_every_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "calltracking.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    for command in ("serve", "demo", "pbx-sim", "migrate", "check", "token", "split-site"):
        assert command in done.stdout

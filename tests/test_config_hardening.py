"""The hardening settings of CONTRACT.md v1.1 and the HTTP limits: read from the environment,
a bad value stops start-up with one line naming the setting."""

from __future__ import annotations

import pytest

from calltracking.config import ConfigError, load_config


def test_the_hardening_settings_have_safe_defaults() -> None:
    config = load_config({})
    assert config.webhook_allow_private is False
    assert config.agi_allow == ""
    assert (config.http_header_timeout_s, config.http_body_timeout_s) == (20.0, 30.0)
    assert config.http_max_connections == 0


def test_the_hardening_settings_are_read_from_the_environment() -> None:
    config = load_config(
        {
            "CALLTRACKING_WEBHOOK_ALLOW_PRIVATE": "true",
            "CALLTRACKING_AGI_ALLOW": "10.0.0.5, 192.168.0.0/16, fd00::/8",
            "CALLTRACKING_HTTP_HEADER_TIMEOUT_S": "5",
            "CALLTRACKING_HTTP_MAX_CONNECTIONS": "900",
        }
    )
    assert config.webhook_allow_private is True
    assert config.agi_allow == "10.0.0.5, 192.168.0.0/16, fd00::/8"
    assert (config.http_header_timeout_s, config.http_max_connections) == (5.0, 900)


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("CALLTRACKING_AGI_ALLOW", "10.0.0.1,pbx.example", "'pbx.example' is not an address"),
        ("CALLTRACKING_AGI_ALLOW", "10.0.0.0/40", "'10.0.0.0/40' is not an address"),
        ("CALLTRACKING_HTTP_HEADER_TIMEOUT_S", "0", "must be greater than 0"),
        ("CALLTRACKING_HTTP_MAX_CONNECTIONS", "-1", "must be 0 (automatic) or more"),
    ],
)
def test_a_bad_hardening_setting_is_one_line_naming_it(name: str, value: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({name: value})
    message = str(caught.value)
    assert message.startswith(name + ":")
    assert words in message
    assert "\n" not in message

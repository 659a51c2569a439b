"""Which webhook targets and FastAGI peers are accepted, and the settings-time URL rule."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calltracking.core.errors import InvalidInput
from calltracking.core.netpolicy import allowed_peer, parse_networks, url_refusal
from calltracking.core.settings import SiteSettings, merge_settings, settings_from_json
from calltracking.core.throttle import LogThrottle


@pytest.mark.parametrize(
    ("url", "word"),
    [
        ("http://127.0.0.1/hook", "loopback"),
        ("http://127.8.0.1:8080/hook", "loopback"),
        ("http://localhost:8080/hook", "loopback name"),
        ("https://api.localhost/hook", "loopback name"),
        ("http://LOCALHOST./hook", "loopback name"),
        ("http://[::1]/hook", "loopback"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("http://10.0.0.5/hook", "private"),
        ("http://192.168.1.1/hook", "private"),
        ("http://172.16.0.1/hook", "private"),
        ("http://[fd00::1]/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[fe80::1]/hook", "link-local"),
        ("http://224.0.0.1/hook", "multicast"),
        ("http://0.0.0.0/hook", "the unspecified address"),
        ("http://100.64.0.1/hook", "not a public address"),
        ("http://2130706433/hook", "loopback"),
        ("http:///hook", "no host"),
    ],
)
def test_a_url_naming_a_non_public_target_is_refused(url: str, word: str) -> None:
    reason = url_refusal(url)
    assert reason is not None and word in reason


@pytest.mark.parametrize(
    "url", ["https://crm.example/hook", "http://8.8.8.8/x", "https://[2001:4860::8888]/x"]
)
def test_a_public_url_is_accepted(url: str) -> None:
    assert url_refusal(url) is None


HOOK = {"url": "http://127.0.0.1:9000/hook", "events": ["call.*"], "secret": "s3cret-value"}


def test_settings_refuse_a_loopback_webhook_naming_the_field() -> None:
    with pytest.raises(InvalidInput) as caught:
        merge_settings(SiteSettings(), {"analytics": {"webhooks": [HOOK]}})
    assert caught.value.field == "settings.analytics.webhooks[0].url"


def test_settings_take_a_loopback_webhook_when_private_targets_are_allowed() -> None:
    merged = merge_settings(
        SiteSettings(), {"analytics": {"webhooks": [HOOK]}}, allow_private_webhooks=True
    )
    assert merged.analytics.webhooks[0].url == HOOK["url"]
    # Stored settings read back whatever the allowance is now: delivery judges them again.
    stored = settings_from_json({"analytics": {"webhooks": [HOOK]}})
    assert stored.analytics.webhooks == merged.analytics.webhooks


@given(st.ip_addresses())
def test_every_non_public_literal_address_is_refused_by_name(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    host = f"[{address}]" if address.version == 6 else str(address)
    reason = url_refusal(f"http://{host}/hook")
    judged = getattr(address, "ipv4_mapped", None) or address
    if not judged.is_global or judged.is_multicast or judged.is_private:
        assert reason is not None
    if reason is not None:
        assert str(judged) in reason


def test_an_allow_list_names_addresses_and_networks() -> None:
    nets = parse_networks(" 10.0.0.5, 192.168.1.0/24,fd00::/8 ,")
    assert allowed_peer("10.0.0.5", nets)
    assert allowed_peer("192.168.1.77", nets)
    assert allowed_peer("::ffff:192.168.1.77", nets)
    assert allowed_peer("fd00::99", nets)
    assert not allowed_peer("10.0.0.6", nets)
    assert not allowed_peer("not-an-address", nets)
    assert allowed_peer("203.0.113.9", ())


@pytest.mark.parametrize("text", ["10.0.0.300", "pbx.example", "10.0.0.0/33", "::1/200"])
def test_a_bad_allow_list_item_is_named(text: str) -> None:
    with pytest.raises(ValueError, match="is not an address or a network"):
        parse_networks(f"10.0.0.1,{text}")


def test_a_throttle_logs_the_first_and_counts_the_rest_until_the_interval_passes() -> None:
    throttle = LogThrottle(interval_s=60)
    assert throttle.admit("cap", 0.0) == 0
    assert [throttle.admit("cap", t) for t in (1.0, 2.0, 59.0)] == [None, None, None]
    assert throttle.admit("other", 3.0) == 0
    assert throttle.admit("cap", 60.0) == 3
    assert throttle.admit("cap", 61.0) is None

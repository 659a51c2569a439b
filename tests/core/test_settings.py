"""Site settings (core.settings): defaults, PATCH merging, refusals naming the field, JSON form.

Every documented setting is accepted with a good value and refused with a bad one, the error's
`field` naming it (`settings.hold_s`, `settings.channels[1]`, ...); analytics targets are validated
and replaced whole; secrets are masked in the API's JSON and survive the stored (unmasked) round
trip, for any valid settings hypothesis can build.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calltracking.core.errors import InvalidInput
from calltracking.core.leases import (
    ActiveLease,
    LastRelease,
    NumberSnapshot,
    allocate,
    revocation_due,
    show_at,
)
from calltracking.core.settings import (
    Analytics,
    Ga4Target,
    MetrikaTarget,
    SiteSettings,
    WebhookTarget,
    mask,
    merge_settings,
    settings_from_json,
    settings_to_json,
)

DOCUMENTED = {
    "show_delay_s",
    "idle_timeout_s",
    "hold_s",
    "cooldown_days",
    "preempt_idle_s",
    "pool_min",
    "pool_max",
    "channels",
    "static",
    "route",
    "display_format",
    "record_calls",
    "lease_on",
    "require_consent",
    "max_leases_per_address",
    "analytics",
}
GA4 = {"measurement_id": "G-ABC123", "api_secret": "ga4-secret-1234"}
METRIKA = {"counter_id": "987654", "token": "y0_metrika-token-5678", "extended_threshold": True}
HOOK = {"url": "https://crm.example/hook", "events": ["call.ended"], "secret": "hook-secret-9012"}
BASE = SiteSettings()


def test_defaults_are_the_documented_ones() -> None:
    assert settings_to_json(BASE) == {
        "show_delay_s": 0,
        "idle_timeout_s": 3600,
        "hold_s": 1800,
        "cooldown_days": 7.0,
        "preempt_idle_s": 600,
        "pool_min": 0,
        "pool_max": 20,
        "channels": None,
        "static": {},
        "route": None,
        "display_format": "+7 (XXX) XXX-XX-XX",
        "record_calls": True,
        "lease_on": "load",
        "require_consent": False,
        "max_leases_per_address": None,
        "analytics": {"ga4": None, "metrika": None, "webhooks": []},
    }
    assert BASE.cooldown_s == 7 * 86_400
    assert BASE.lease_cap_per_address == 5  # a quarter of pool_max 20


@pytest.mark.parametrize(
    ("pool_max", "given", "cap"),
    [(20, None, 5), (40, None, 5), (8, None, 2), (3, None, 1), (0, None, 1), (3, 7, 7)],
)
def test_the_per_address_lease_cap(pool_max: int, given: int | None, cap: int) -> None:
    settings = SiteSettings(pool_max=pool_max, max_leases_per_address=given)
    assert settings.lease_cap_per_address == cap


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("show_delay_s", 0, 0),
        ("show_delay_s", 15, 15),
        ("idle_timeout_s", 1, 1),
        ("idle_timeout_s", 7200, 7200),
        ("hold_s", 0, 0),
        ("hold_s", 5, 5),
        ("cooldown_days", 0, 0.0),
        ("cooldown_days", 3, 3.0),
        ("cooldown_days", 0.25, 0.25),
        ("preempt_idle_s", 0, 0),
        ("preempt_idle_s", 900, 900),
        ("pool_min", 20, 20),
        ("pool_max", 0, 0),
        ("pool_max", 50, 50),
        ("channels", None, None),
        ("channels", [], ()),
        (
            "channels",
            ["cpc", "utm_source=google", "Organic"],
            ("cpc", "utm_source=google", "Organic"),
        ),
        ("static", {}, {}),
        ("static", {"+74957770011": "avito/listing"}, {"+74957770011": "avito/listing"}),
        ("route", None, None),
        ("route", "sales@operators", "sales@operators"),
        ("display_format", "8 (XXX) XXX-XX-XX", "8 (XXX) XXX-XX-XX"),
        ("record_calls", False, False),
        ("lease_on", "visible", "visible"),
        ("lease_on", "load", "load"),
        ("lease_on", "interaction", "interaction"),
        ("max_leases_per_address", None, None),
        ("max_leases_per_address", 1, 1),
        ("require_consent", True, True),
        (
            "analytics",
            {"ga4": GA4, "metrika": METRIKA, "webhooks": [HOOK]},
            Analytics(
                ga4=Ga4Target("G-ABC123", "ga4-secret-1234"),
                metrika=MetrikaTarget("987654", "y0_metrika-token-5678", True),
                webhooks=(
                    WebhookTarget("https://crm.example/hook", ("call.ended",), "hook-secret-9012"),
                ),
            ),
        ),
    ],
)
def test_merge_accepts_every_documented_setting(key: str, value: Any, expected: Any) -> None:
    merged = merge_settings(BASE, {key: value})
    assert getattr(merged, key) == expected
    assert type(getattr(merged, key)) is type(expected)
    assert replace(merged, **{key: getattr(BASE, key)}) == BASE  # nothing else changed


def test_every_documented_setting_is_a_field_and_nothing_else() -> None:
    assert set(settings_to_json(BASE)) == DOCUMENTED


def test_merge_is_key_by_key() -> None:
    base = merge_settings(BASE, {"hold_s": 60, "pool_max": 3, "lease_on": "visible"})
    merged = merge_settings(base, {"pool_max": 5})
    assert (merged.hold_s, merged.pool_max, merged.lease_on) == (60, 5, "visible")
    assert merge_settings(base, {}) == base


NOT_WHOLE = [-1, 1.5, 1.0, "60", None, True, False, [], {}]


def refusals() -> list[Any]:
    rows: list[Any] = [("settings.foo", {"foo": 1}), ("settings.Hold_s", {"Hold_s": 1})]
    for key in (
        "show_delay_s",
        "idle_timeout_s",
        "hold_s",
        "preempt_idle_s",
        "pool_min",
        "pool_max",
    ):
        rows += [(f"settings.{key}", {key: bad}) for bad in NOT_WHOLE]
    rows += [
        ("settings.idle_timeout_s", {"idle_timeout_s": 0}),
        ("settings.cooldown_days", {"cooldown_days": -0.5}),
        ("settings.cooldown_days", {"cooldown_days": True}),
        ("settings.cooldown_days", {"cooldown_days": "7"}),
        ("settings.cooldown_days", {"cooldown_days": None}),
        ("settings.pool_min", {"pool_min": 21}),
        ("settings.pool_min", {"pool_min": 5, "pool_max": 4}),
        ("settings.record_calls", {"record_calls": 1}),
        ("settings.record_calls", {"record_calls": "true"}),
        ("settings.require_consent", {"require_consent": None}),
        ("settings.lease_on", {"lease_on": "click"}),
        ("settings.max_leases_per_address", {"max_leases_per_address": 0}),
        ("settings.max_leases_per_address", {"max_leases_per_address": True}),
        ("settings.max_leases_per_address", {"max_leases_per_address": "5"}),
        ("settings.lease_on", {"lease_on": None}),
        ("settings.route", {"route": "sales operators"}),
        ("settings.route", {"route": "x" * 81}),
        ("settings.route", {"route": 5}),
        ("settings.display_format", {"display_format": "+7 (495) 111-00-01"}),
        ("settings.display_format", {"display_format": "X" * 41}),
        ("settings.display_format", {"display_format": None}),
        ("settings.channels", {"channels": "cpc"}),
        ("settings.channels", {"channels": ["cpc", 5]}),
        ("settings.channels[0]", {"channels": ["paid"]}),
        ("settings.channels[1]", {"channels": ["cpc", "term=sofa"]}),
        ("settings.channels[2]", {"channels": ["cpc", "organic", "source="]}),
        ("settings.static", {"static": ["+74957770011"]}),
        ("settings.static.74957770011", {"static": {"74957770011": "avito"}}),
        ("settings.static.+7 495 777 00 11", {"static": {"+7 495 777 00 11": "avito"}}),
        ("settings.static.+74957770011", {"static": {"+74957770011": ""}}),
        ("settings.static.+74957770011", {"static": {"+74957770011": "x" * 101}}),
        ("settings.static.+74957770011", {"static": {"+74957770011": None}}),
        ("settings.analytics", {"analytics": None}),
        ("settings.analytics", {"analytics": []}),
        ("settings.analytics.facebook", {"analytics": {"facebook": {}}}),
        ("settings.analytics.ga4", {"analytics": {"ga4": "G-1"}}),
        ("settings.analytics.ga4.api_secret", {"analytics": {"ga4": {"measurement_id": "G-1"}}}),
        (
            "settings.analytics.ga4.measurement_id",
            {"analytics": {"ga4": {"measurement_id": "  ", "api_secret": "s"}}},
        ),
        ("settings.analytics.metrika.token", {"analytics": {"metrika": {"counter_id": "1"}}}),
        (
            "settings.analytics.metrika.extended_threshold",
            {"analytics": {"metrika": {**METRIKA, "extended_threshold": "yes"}}},
        ),
        ("settings.analytics.webhooks", {"analytics": {"webhooks": HOOK}}),
        ("settings.analytics.webhooks[0]", {"analytics": {"webhooks": ["https://x.example"]}}),
        (
            "settings.analytics.webhooks[1].url",
            {"analytics": {"webhooks": [HOOK, {**HOOK, "url": "ftp://x.example"}]}},
        ),
        (
            "settings.analytics.webhooks[0].events",
            {"analytics": {"webhooks": [{**HOOK, "events": []}]}},
        ),
        (
            "settings.analytics.webhooks[0].events",
            {"analytics": {"webhooks": [{**HOOK, "events": "call.ended"}]}},
        ),
        (
            "settings.analytics.webhooks[0].secret",
            {"analytics": {"webhooks": [{**HOOK, "secret": ""}]}},
        ),
    ]
    return [pytest.param(field, patch, id=f"{field}={patch!r}"[:80]) for field, patch in rows]


@pytest.mark.parametrize(("field", "patch"), refusals())
def test_merge_refuses_bad_values_naming_the_field(field: str, patch: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as caught:
        merge_settings(BASE, patch)
    assert caught.value.field == field
    assert caught.value.code == "invalid"
    assert str(caught.value).startswith(f"{field}: ")


def test_merge_refuses_a_patch_that_is_not_an_object() -> None:
    with pytest.raises(InvalidInput) as caught:
        merge_settings(BASE, ["hold_s"])  # type: ignore[arg-type]
    assert caught.value.field == "settings"


def test_pool_min_is_checked_against_the_merged_pool_max() -> None:
    base = merge_settings(BASE, {"pool_max": 3})
    with pytest.raises(InvalidInput) as caught:
        merge_settings(base, {"pool_min": 4})
    assert caught.value.field == "settings.pool_min"
    assert merge_settings(base, {"pool_min": 4, "pool_max": 4}).pool_min == 4


def test_cooldown_days_refuses_minus_infinity() -> None:
    with pytest.raises(InvalidInput) as caught:
        merge_settings(BASE, {"cooldown_days": -math.inf})
    assert caught.value.field == "settings.cooldown_days"


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_cooldown_days_must_be_finite(value: float) -> None:
    with pytest.raises(InvalidInput) as caught:
        merge_settings(BASE, {"cooldown_days": value})
    assert caught.value.field == "settings.cooldown_days"


NOW = datetime(2025, 3, 1, tzinfo=UTC)
RELEASED = NumberSnapshot(
    "+74950000001", "site-a", last_release=LastRelease("v2", "site-a", NOW - timedelta(days=1))
)
LEASED = NumberSnapshot(
    "+74950000002", "site-a", lease=ActiveLease("l", "v2", NOW - timedelta(days=1))
)


def use_settings(settings: SiteSettings) -> None:
    """What the lease rules do with the durations: all of it must work for accepted values."""
    for pool in ([RELEASED], [LEASED]):
        allocate(
            site_id="site-a",
            visitor_id="v1",
            pool=pool,
            reserve=[],
            settings=settings,
            account_capacity=0,
            now=NOW,
        )
    revocation_due(NOW, settings)
    show_at(NOW, settings)


def test_ordinary_durations_are_usable() -> None:
    use_settings(BASE)
    use_settings(merge_settings(BASE, {"hold_s": 0, "preempt_idle_s": 0, "idle_timeout_s": 1}))


@pytest.mark.parametrize("key", ["hold_s", "preempt_idle_s", "idle_timeout_s", "show_delay_s"])
def test_every_accepted_duration_is_usable_by_the_lease_rules(key: str) -> None:
    try:
        settings = merge_settings(BASE, {key: 10**15})
    except InvalidInput as exc:
        assert exc.field == f"settings.{key}"  # noqa: PT017 - refusing is the fix
        return
    use_settings(settings)


# --- analytics targets are replaced whole -------------------------------------------------------

FULL = merge_settings(BASE, {"analytics": {"ga4": GA4, "metrika": METRIKA, "webhooks": [HOOK]}})


def test_a_given_target_is_replaced_whole_and_the_others_kept() -> None:
    merged = merge_settings(FULL, {"analytics": {"metrika": {"counter_id": "1", "token": "t"}}})
    assert merged.analytics.metrika == MetrikaTarget("1", "t", extended_threshold=False)
    assert merged.analytics.ga4 == FULL.analytics.ga4
    assert merged.analytics.webhooks == FULL.analytics.webhooks


def test_null_removes_a_target_and_webhooks_are_replaced_as_a_list() -> None:
    other = {"url": "http://b.example/x", "events": ["call.*"], "secret": "s2"}
    merged = merge_settings(FULL, {"analytics": {"ga4": None, "webhooks": [other]}})
    assert merged.analytics.ga4 is None
    assert merged.analytics.metrika == FULL.analytics.metrika
    assert merged.analytics.webhooks == (WebhookTarget("http://b.example/x", ("call.*",), "s2"),)
    cleared = merge_settings(FULL, {"analytics": {"metrika": None, "webhooks": None}})
    assert cleared.analytics == Analytics(ga4=FULL.analytics.ga4)


def test_a_refused_target_changes_nothing() -> None:
    with pytest.raises(InvalidInput):
        merge_settings(FULL, {"analytics": {"ga4": None, "metrika": {"counter_id": "1"}}})
    assert FULL.analytics.ga4 is not None


def test_target_texts_are_trimmed() -> None:
    merged = merge_settings(
        BASE, {"analytics": {"ga4": {"measurement_id": " G-1 ", "api_secret": "\tsecret\n"}}}
    )
    assert merged.analytics.ga4 == Ga4Target("G-1", "secret")


# --- JSON: masked for the API, exact for the store ----------------------------------------------


def test_the_api_form_masks_every_secret() -> None:
    data = settings_to_json(FULL)
    text = json.dumps(data)
    for secret in ("ga4-secret-1234", "y0_metrika-token-5678", "hook-secret-9012"):
        assert secret not in text
    assert data["analytics"]["ga4"] == {"measurement_id": "G-ABC123", "api_secret": "****1234"}
    assert data["analytics"]["metrika"]["token"] == "****5678"
    assert data["analytics"]["metrika"]["counter_id"] == "987654"
    assert data["analytics"]["webhooks"] == [
        {"url": "https://crm.example/hook", "events": ["call.ended"], "secret": "****9012"}
    ]


@pytest.mark.parametrize(
    ("secret", "shown"),
    [("", "****"), ("abcd", "****"), ("abcde", "****bcde"), ("x" * 40, "****xxxx")],
)
def test_mask_shows_at_most_the_last_four_characters(secret: str, shown: str) -> None:
    assert mask(secret) == shown


def test_the_stored_form_keeps_secrets() -> None:
    data = settings_to_json(FULL, mask_secrets=False)
    assert data["analytics"]["ga4"]["api_secret"] == "ga4-secret-1234"
    assert settings_from_json(data) == FULL


texts = st.text(min_size=1, max_size=30).map(str.strip).filter(bool)
whole = st.integers(min_value=0, max_value=10**7)
rules = st.sampled_from(
    [
        "cpc",
        "organic",
        "social",
        "referral",
        "direct",
        "source=google",
        "utm_medium=email",
        "Campaign=Spring Sale",
    ]
)
e164s = st.from_regex(r"\+[1-9][0-9]{7,14}", fullmatch=True)
targets = st.fixed_dictionaries(
    {},
    optional={
        "ga4": st.none() | st.fixed_dictionaries({"measurement_id": texts, "api_secret": texts}),
        "metrika": st.none()
        | st.fixed_dictionaries(
            {"counter_id": texts, "token": texts},
            optional={"extended_threshold": st.booleans()},
        ),
        "webhooks": st.none()
        | st.lists(
            st.fixed_dictionaries(
                {
                    "url": st.sampled_from(["http://", "https://"]).flatmap(
                        # a public host: loopback and private targets are refused
                        lambda scheme: texts.map(lambda rest: scheme + "hooks.example/" + rest)
                    ),
                    "events": st.lists(st.text(max_size=20), min_size=1, max_size=3),
                    "secret": texts,
                }
            ),
            max_size=3,
        ),
    },
)


@st.composite
def patches(draw: st.DrawFn) -> dict[str, Any]:
    pool_max = draw(st.integers(min_value=0, max_value=500))
    values: dict[str, Any] = {
        "show_delay_s": whole,
        "idle_timeout_s": st.integers(min_value=1, max_value=10**7),
        "hold_s": whole,
        "cooldown_days": st.integers(min_value=0, max_value=365)
        | st.floats(min_value=0, max_value=365, allow_nan=False),
        "preempt_idle_s": whole,
        "pool_min": st.integers(min_value=0, max_value=pool_max),
        "pool_max": st.just(pool_max),
        "channels": st.none() | st.lists(rules, max_size=4),
        "static": st.dictionaries(e164s, st.text(min_size=1, max_size=100), max_size=3),
        "route": st.none() | st.from_regex(r"[a-z0-9_-]{1,20}@[a-z0-9_-]{1,20}", fullmatch=True),
        "display_format": st.text(alphabet="X +()-0123456789", max_size=39).map(lambda t: t + "X"),
        "record_calls": st.booleans(),
        "lease_on": st.sampled_from(["load", "visible", "interaction"]),
        "require_consent": st.booleans(),
        "max_leases_per_address": st.none() | st.integers(min_value=1, max_value=100_000),
        "analytics": targets,
    }
    keys = draw(st.sets(st.sampled_from(sorted(values))))
    if "pool_min" in keys:
        keys.add("pool_max")
    return {key: draw(values[key]) for key in sorted(keys)}


@given(patches())
def test_the_stored_json_round_trips_any_valid_settings(patch: dict[str, Any]) -> None:
    settings = merge_settings(BASE, patch)
    stored = json.loads(json.dumps(settings_to_json(settings, mask_secrets=False)))
    assert settings_from_json(stored) == settings
    shown = settings_to_json(settings)
    assert set(shown) == DOCUMENTED
    json.dumps(shown)  # the API form is plain JSON too


@given(patches(), patches())
def test_merging_twice_is_merging_the_union(first: dict[str, Any], second: dict[str, Any]) -> None:
    """PATCH semantics: later keys win, other keys stay, analytics merge target by target."""
    union_patch = {**first, **second, "analytics": {}}
    if union_patch.get("pool_min", 0) > union_patch.get("pool_max", BASE.pool_max):
        # pool_min of one patch above pool_max of the other: refused either way
        with pytest.raises(InvalidInput, match=r"settings\.pool_min"):
            merge_settings(BASE, union_patch)
        with pytest.raises(InvalidInput, match=r"settings\.pool_min"):
            merge_twice(first, second)
        return
    union = merge_settings(BASE, union_patch)
    twice = merge_twice(first, second)
    analytics_patch = {**first.get("analytics", {}), **second.get("analytics", {})}
    assert twice == replace(
        union, analytics=merge_settings(BASE, {"analytics": analytics_patch}).analytics
    )


def merge_twice(first: dict[str, Any], second: dict[str, Any]) -> SiteSettings:
    return merge_settings(merge_settings(BASE, first), second)

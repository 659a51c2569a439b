"""Channel rules: parsing, refusing bad rules, and which visitors they track."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calltracking.core.channels import ChannelRule, RuleField, is_tracked, parse_rule
from calltracking.core.traffic import DIRECT, TrafficSource

GOOGLE_ADS = TrafficSource("google", "cpc", "spring")
GOOGLE_SEARCH = TrafficSource("google", "organic")
VK = TrafficSource("vk", "social")
PARTNER = TrafficSource("partner.example", "referral")
NEWSLETTER = TrafficSource("mailer", "email", "may")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("source=google", ChannelRule(RuleField.SOURCE, "google")),
        ("utm_source=google", ChannelRule(RuleField.SOURCE, "google")),
        ("UTM_Source = Google ", ChannelRule(RuleField.SOURCE, "google")),
        ("medium=cpc", ChannelRule(RuleField.MEDIUM, "cpc")),
        ("utm_medium=cpc", ChannelRule(RuleField.MEDIUM, "cpc")),
        ("campaign=Spring", ChannelRule(RuleField.CAMPAIGN, "spring")),
        ("utm_campaign=a=b", ChannelRule(RuleField.CAMPAIGN, "a=b")),
        ("cpc", ChannelRule(RuleField.CLASS, "cpc")),
        ("Organic", ChannelRule(RuleField.CLASS, "organic")),
        (" social ", ChannelRule(RuleField.CLASS, "social")),
        ("referral", ChannelRule(RuleField.CLASS, "referral")),
        ("direct", ChannelRule(RuleField.CLASS, "direct")),
    ],
)
def test_parse_rule_reads_keys_and_class_words(text: str, expected: ChannelRule) -> None:
    assert parse_rule(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "non-empty"),
        ("   ", "non-empty"),
        ("other", "unknown channel rule"),
        ("paid", "unknown channel rule"),
        ("term=sofa", "unknown key 'term'"),
        ("utm_term=sofa", "unknown key 'utm_term'"),
        ("=google", "unknown key ''"),
        ("source=", "no value"),
        ("source=  ", "no value"),
    ],
)
def test_parse_rule_refuses_bad_rules_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rule(text)


def test_parse_rule_refuses_a_non_text() -> None:
    with pytest.raises(ValueError, match="non-empty text"):
        parse_rule(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rules", "source", "expected"),
    [
        (None, DIRECT, True),
        (None, NEWSLETTER, True),
        ([], GOOGLE_ADS, False),
        ([], DIRECT, False),
        (["source=google"], GOOGLE_ADS, True),
        (["source=google"], GOOGLE_SEARCH, True),
        (["source=google"], VK, False),
        (["utm_source=GOOGLE"], GOOGLE_ADS, True),
        (["medium=cpc"], GOOGLE_ADS, True),
        (["medium=cpc"], GOOGLE_SEARCH, False),
        (["campaign=spring"], GOOGLE_ADS, True),
        (["campaign=spring"], GOOGLE_SEARCH, False),  # no campaign at all
        (["campaign=summer"], GOOGLE_ADS, False),
        (["cpc"], GOOGLE_ADS, True),
        (["cpc"], TrafficSource("partner", "cpa"), True),
        (["cpc"], GOOGLE_SEARCH, False),
        (["organic"], GOOGLE_SEARCH, True),
        (["organic"], GOOGLE_ADS, False),
        (["social"], VK, True),
        (["referral"], PARTNER, True),
        (["referral"], VK, False),
        (["direct"], DIRECT, True),
        (["direct"], PARTNER, False),
        # Any rule matching is enough.
        (["cpc", "social"], VK, True),
        (["cpc", "social"], GOOGLE_SEARCH, False),
        (["medium=email", "direct"], NEWSLETTER, True),
        # No class word names "other" traffic: only key rules reach it.
        (["cpc", "organic", "social", "referral", "direct"], NEWSLETTER, False),
    ],
)
def test_is_tracked_when_any_rule_matches(
    rules: list[str] | None, source: TrafficSource, expected: bool
) -> None:
    assert is_tracked(rules, source) is expected


def test_is_tracked_accepts_parsed_rules() -> None:
    assert is_tracked([parse_rule("medium=cpc")], GOOGLE_ADS)


def test_is_tracked_refuses_a_bad_rule_rather_than_guessing() -> None:
    with pytest.raises(ValueError, match="unknown channel rule"):
        is_tracked(["nonsense"], GOOGLE_ADS)


@given(st.sampled_from(["source", "medium", "campaign"]), st.text(min_size=1, max_size=20))
def test_a_utm_prefix_never_changes_a_rule(key: str, value: str) -> None:
    try:
        plain = parse_rule(f"{key}={value}")
    except ValueError:
        with pytest.raises(ValueError):
            parse_rule(f"utm_{key}={value}")
        return
    assert parse_rule(f"utm_{key}={value}") == plain
    assert plain.value == plain.value.lower()

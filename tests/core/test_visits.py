"""Visits: the 30-minute idle rule and GA's new-campaign rule."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calltracking.core.traffic import DIRECT, TrafficSource
from calltracking.core.visits import VISIT_IDLE, starts_new_visit, visit_is_over

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
GOOGLE_ADS = TrafficSource("google", "cpc", "spring", term="sofa")
GOOGLE_SEARCH = TrafficSource("google", "organic")


def test_visit_idle_is_thirty_minutes() -> None:
    assert timedelta(minutes=30) == VISIT_IDLE


@pytest.mark.parametrize(
    ("idle", "open_tabs", "expected"),
    [
        (timedelta(0), 0, False),
        (timedelta(minutes=29, seconds=59), 0, False),
        (timedelta(minutes=30), 0, True),
        (timedelta(minutes=30, seconds=1), 0, True),
        (timedelta(hours=5), 0, True),
        # An open tab keeps the visit alive however long it idles.
        (timedelta(minutes=30, seconds=1), 1, False),
        (timedelta(days=2), 3, False),
        # A clock that went backwards is not an idle visit.
        (timedelta(minutes=-5), 0, False),
    ],
)
def test_visit_is_over_after_30_idle_minutes_without_open_tabs(
    idle: timedelta, open_tabs: int, expected: bool
) -> None:
    assert visit_is_over(T0, T0 + idle, open_tabs) is expected


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=1, max_value=50))
def test_open_tabs_always_keep_a_visit(idle_s: int, open_tabs: int) -> None:
    assert not visit_is_over(T0, T0 + timedelta(seconds=idle_s), open_tabs)


@pytest.mark.parametrize(
    ("current", "incoming", "expected"),
    [
        (None, DIRECT, True),
        (None, GOOGLE_ADS, True),
        # Same source, medium and campaign: the same visit, whatever the term or content.
        (GOOGLE_ADS, TrafficSource("google", "cpc", "spring", term="bed"), False),
        (GOOGLE_ADS, TrafficSource("google", "cpc", "spring", content="ad2"), False),
        # Any of the three differing starts a new visit.
        (GOOGLE_ADS, TrafficSource("yandex", "cpc", "spring"), True),
        (GOOGLE_ADS, TrafficSource("google", "cpm", "spring"), True),
        (GOOGLE_ADS, TrafficSource("google", "cpc", "summer"), True),
        (GOOGLE_ADS, TrafficSource("google", "cpc"), True),
        (GOOGLE_ADS, GOOGLE_SEARCH, True),
        # Direct never replaces a known source...
        (GOOGLE_ADS, DIRECT, False),
        (GOOGLE_SEARCH, DIRECT, False),
        # ...and a known source does replace direct.
        (DIRECT, GOOGLE_SEARCH, True),
        (DIRECT, DIRECT, False),
    ],
)
def test_a_new_campaign_starts_a_new_visit_but_direct_never_does(
    current: TrafficSource | None, incoming: TrafficSource, expected: bool
) -> None:
    assert starts_new_visit(current, incoming) is expected


_sources = st.builds(
    TrafficSource,
    st.sampled_from(["google", "yandex", "vk", "(direct)"]),
    st.sampled_from(["cpc", "organic", "social", "(none)"]),
    st.none() | st.sampled_from(["spring", "summer"]),
)


@given(_sources)
def test_arriving_again_from_the_same_campaign_continues_the_visit(source: TrafficSource) -> None:
    assert not starts_new_visit(source, source)

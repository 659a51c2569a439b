"""`month_of` names the local month an instant falls in, as `month_bounds` reads it back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from calltracking.core.reports.localtime import month_bounds, month_of, parse_month

ZONES = ["UTC", "Europe/Moscow", "Asia/Kamchatka", "America/St_Johns", "Pacific/Chatham"]


@given(
    at=st.datetimes(
        min_value=datetime(1, 2, 1), max_value=datetime(9999, 11, 30), timezones=st.just(UTC)
    ),
    zone=st.sampled_from(ZONES),
)
def test_an_instant_lies_within_the_bounds_of_the_month_it_is_named_in(
    at: datetime, zone: str
) -> None:
    tz = ZoneInfo(zone)
    month = month_of(at, tz)
    local = at.astimezone(tz)
    assert parse_month(month) == local.date().replace(day=1)
    since, until = month_bounds(month, tz)
    assert since <= at < until


def test_a_year_before_1000_keeps_its_four_digits() -> None:
    assert month_of(datetime(999, 3, 5, tzinfo=UTC), ZoneInfo("UTC")) == "0999-03"


def test_the_last_instant_of_a_local_month_is_still_in_it() -> None:
    tz = ZoneInfo("Europe/Moscow")
    february = datetime(2024, 2, 29, 21, tzinfo=UTC)  # midnight of March 1st in Moscow
    assert month_of(february - timedelta(microseconds=1), tz) == "2024-02"
    assert month_of(february, tz) == "2024-03"

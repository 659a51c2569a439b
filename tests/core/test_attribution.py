"""Attribution of a call to number N at time t (core.attribution, CONTRACT.md "Attribution kinds").

Each kind with times on both sides of each boundary (the hold's last instant is held, one
microsecond later is cooled; the cool-down's last instant is cooled, one microsecond later is not),
the confidence ranges, and hypothesis properties: confidence falls with time within each kind, and
the kind only ever moves forward (dynamic, held, cooled, unattributed) as time passes.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calltracking.core.attribution import (
    COOLED_MAX,
    COOLED_MIN,
    HELD_MAX,
    HELD_MIN,
    Attribution,
    LeaseFacts,
    NumberFacts,
    attribute,
)
from calltracking.core.kinds import AttributionKind as Kind
from calltracking.core.settings import SiteSettings

SITE = "site-a"
N = "+74950000001"
T = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)  # the call's time
US = timedelta(microseconds=1)
SETTINGS = SiteSettings(hold_s=1800, cooldown_days=7)
HOLD = timedelta(seconds=1800)
COOLDOWN = timedelta(days=7)
DEFAULT_ORDER = (Kind.INITIAL, Kind.EXPIRED, Kind.UNTRACKED)


def lease(*, assigned: timedelta, ended: timedelta | None, site: str = SITE) -> LeaseFacts:
    """A lease assigned and ended at offsets from the call's time (negative: before the call)."""
    return LeaseFacts(
        lease_id="lease-1",
        site_id=site,
        visitor_id="v1",
        visit_id="visit-1",
        assigned_at=T + assigned,
        ended_at=None if ended is None else T + ended,
    )


def in_pool(last: LeaseFacts | None, settings: SiteSettings = SETTINGS) -> NumberFacts:
    return NumberFacts(N, SITE, last_lease=last, last_lease_settings=settings)


def in_reserve(last: LeaseFacts | None, settings: SiteSettings = SETTINGS) -> NumberFacts:
    return NumberFacts(N, None, last_lease=last, last_lease_settings=settings)


def ended_ago(ago: timedelta) -> LeaseFacts:
    return lease(assigned=-ago - timedelta(hours=1), ended=-ago)


def defaults(*kinds: Kind) -> NumberFacts:
    """A default number serving `kinds`, listed as the store lists them (DEFAULT_ORDER)."""
    return NumberFacts(N, SITE, default_kinds=tuple(k for k in DEFAULT_ORDER if k in kinds))


def cooled_confidence_at(ago: timedelta, cooldown: timedelta = COOLDOWN) -> float:
    share = ago.total_seconds() / cooldown.total_seconds()
    return round(COOLED_MAX - (COOLED_MAX - COOLED_MIN) * share, 3)


KIND_TABLE = [
    # dynamic: leased at t (assignment at t counts, an end after t does not end it yet)
    pytest.param(in_pool(lease(assigned=-HOLD, ended=None)), Kind.DYNAMIC, 1.0, id="leased"),
    pytest.param(
        in_pool(lease(assigned=timedelta(0), ended=None)), Kind.DYNAMIC, 1.0, id="assigned-at-t"
    ),
    pytest.param(in_pool(lease(assigned=-HOLD, ended=US)), Kind.DYNAMIC, 1.0, id="ends-after-t"),
    pytest.param(
        in_reserve(lease(assigned=-HOLD, ended=None)),
        Kind.DYNAMIC,
        1.0,
        id="leased-site-is-lease's",
    ),
    # a lease assigned after the call is not the call's
    pytest.param(
        in_pool(lease(assigned=US, ended=None)), Kind.UNATTRIBUTED, 0.0, id="assigned-after-t"
    ),
    pytest.param(
        in_reserve(lease(assigned=US, ended=None)), Kind.UNKNOWN, 0.0, id="assigned-after-t-reserve"
    ),
    # held: ended at most hold_s before t, 0.9 falling to 0.5
    pytest.param(in_pool(ended_ago(timedelta(0))), Kind.HELD, HELD_MAX, id="ended-at-t"),
    pytest.param(in_pool(ended_ago(HOLD / 2)), Kind.HELD, 0.7, id="mid-hold"),
    pytest.param(in_pool(ended_ago(HOLD)), Kind.HELD, HELD_MIN, id="hold-last-instant"),
    # cooled: after the hold, within cooldown_days, 0.5 falling to 0.05
    pytest.param(
        in_pool(ended_ago(HOLD + US)),
        Kind.COOLED,
        cooled_confidence_at(HOLD),
        id="one-microsecond-after-the-hold",
    ),
    pytest.param(
        in_pool(ended_ago(COOLDOWN / 2)),
        Kind.COOLED,
        round((COOLED_MAX + COOLED_MIN) / 2, 3),
        id="mid-cool-down",
    ),
    pytest.param(
        in_pool(ended_ago(COOLDOWN)), Kind.COOLED, COOLED_MIN, id="cool-down-last-instant"
    ),
    pytest.param(
        in_reserve(ended_ago(timedelta(days=3))),
        Kind.COOLED,
        cooled_confidence_at(timedelta(days=3)),
        id="back-in-the-reserve-still-cooling",
    ),
    pytest.param(
        in_reserve(ended_ago(HOLD)), Kind.HELD, HELD_MIN, id="back-in-the-reserve-in-hold"
    ),
    # beyond the cool-down: unattributed in a pool, unknown elsewhere
    pytest.param(
        in_pool(ended_ago(COOLDOWN + US)),
        Kind.UNATTRIBUTED,
        0.0,
        id="one-microsecond-after-cooldown",
    ),
    pytest.param(
        in_reserve(ended_ago(COOLDOWN + US)), Kind.UNKNOWN, 0.0, id="reserve-after-cooldown"
    ),
    pytest.param(in_pool(None), Kind.UNATTRIBUTED, 0.0, id="never-leased-pool-number"),
    pytest.param(in_reserve(None), Kind.UNKNOWN, 0.0, id="no-site-no-lease"),
    pytest.param(NumberFacts(N, None), Kind.UNKNOWN, 0.0, id="unknown-number"),
    pytest.param(
        NumberFacts(N, SITE, last_lease=lease(assigned=-HOLD, ended=None)),
        Kind.UNATTRIBUTED,
        0.0,
        id="a-lease-without-its-settings-is-not-used",
    ),
    # static and defaults, confidence 1 for the source they stand for
    pytest.param(NumberFacts(N, SITE, static_label="avito/listing"), Kind.STATIC, 1.0, id="static"),
    pytest.param(defaults(Kind.INITIAL), Kind.INITIAL, 1.0, id="initial"),
    pytest.param(defaults(Kind.EXPIRED), Kind.EXPIRED, 1.0, id="expired"),
    pytest.param(defaults(Kind.UNTRACKED), Kind.UNTRACKED, 1.0, id="untracked"),
    pytest.param(defaults(*DEFAULT_ORDER), Kind.INITIAL, 1.0, id="one-number-all-defaults"),
    pytest.param(defaults(Kind.EXPIRED, Kind.UNTRACKED), Kind.EXPIRED, 1.0, id="expired+untracked"),
    pytest.param(defaults(Kind.UNTRACKED, Kind.INITIAL), Kind.INITIAL, 1.0, id="initial+untracked"),
    pytest.param(
        replace(defaults(Kind.UNTRACKED), last_lease=lease(assigned=-HOLD, ended=None)),
        Kind.UNTRACKED,
        1.0,
        id="a-default-number-stays-default",
    ),
]


@pytest.mark.parametrize(("number", "kind", "confidence"), KIND_TABLE)
def test_attribute_kind_and_confidence(number: NumberFacts, kind: Kind, confidence: float) -> None:
    result = attribute(number, T)
    assert result.kind is kind
    assert result.confidence == pytest.approx(confidence, abs=1e-9)
    if kind.tracked:
        assert result.lease == number.last_lease
        assert number.last_lease is not None and result.site_id == number.last_lease.site_id
    else:
        assert result.lease is None
    if kind in (Kind.UNATTRIBUTED, Kind.STATIC) or kind.is_default:
        assert result.site_id == SITE
    if kind is Kind.UNKNOWN:
        assert result.site_id is None
    assert result.static_label == (number.static_label if kind is Kind.STATIC else None)


@pytest.mark.parametrize(
    ("hold_s", "cooldown_days", "ago", "kind"),
    [
        (0, 7, timedelta(0), Kind.HELD),  # no hold: only a call at the very end is held
        (0, 7, US, Kind.COOLED),
        (0, 0, US, Kind.UNATTRIBUTED),
        (1800, 0, HOLD, Kind.HELD),  # no cool-down: the hold still holds
        (1800, 0, HOLD + US, Kind.UNATTRIBUTED),
        (1800, 0.01, HOLD, Kind.HELD),  # a cool-down shorter than the hold ends nothing early
        (1, 7, timedelta(seconds=1), Kind.HELD),
        (1, 7, timedelta(seconds=1) + US, Kind.COOLED),
    ],
)
def test_short_and_zero_durations(
    hold_s: int, cooldown_days: float, ago: timedelta, kind: Kind
) -> None:
    settings = SiteSettings(hold_s=hold_s, cooldown_days=cooldown_days)
    assert attribute(in_pool(ended_ago(ago), settings), T).kind is kind


def test_the_held_confidence_at_a_zero_hold_is_its_top() -> None:
    settings = SiteSettings(hold_s=0)
    assert attribute(in_pool(ended_ago(timedelta(0)), settings), T).confidence == HELD_MAX


COOLDOWN_DAYS = [
    7,
    2.5,
    0.5,
    1.1,
    0.7,  # 0.7 days is 60479.99999999999 s in floats; the rule must agree with timedelta's 60480
]


@pytest.mark.parametrize("cooldown_days", COOLDOWN_DAYS)
def test_the_cool_downs_last_instant_is_cooled_for_fractional_days(cooldown_days: float) -> None:
    settings = SiteSettings(hold_s=60, cooldown_days=cooldown_days)
    cooldown = timedelta(days=cooldown_days)  # how the store computes `cooling_until`
    assert attribute(in_pool(ended_ago(cooldown), settings), T).kind is Kind.COOLED
    assert attribute(in_pool(ended_ago(cooldown + US), settings), T).kind is Kind.UNATTRIBUTED


# --- properties ----------------------------------------------------------------------------------

hold_seconds = st.integers(min_value=0, max_value=7 * 86_400)
cooldown_whole_days = st.integers(min_value=0, max_value=90)
micros = st.integers(min_value=0, max_value=100 * 86_400 * 10**6).map(
    lambda n: timedelta(microseconds=n)
)


@given(hold_s=hold_seconds, days=cooldown_whole_days)
def test_boundaries_hold_for_any_whole_durations(hold_s: int, days: int) -> None:
    settings = SiteSettings(hold_s=hold_s, cooldown_days=days)
    hold, cooldown = timedelta(seconds=hold_s), timedelta(days=days)

    def kind(ago: timedelta) -> Kind:
        return attribute(in_pool(ended_ago(ago), settings), T).kind

    assert kind(hold) is Kind.HELD
    after_hold = Kind.COOLED if hold + US <= cooldown else Kind.UNATTRIBUTED
    assert kind(hold + US) is after_hold
    if cooldown > hold:
        assert kind(cooldown) is Kind.COOLED
    assert kind(max(cooldown, hold) + US) is Kind.UNATTRIBUTED


@given(hold_s=hold_seconds, days=cooldown_whole_days, first=micros, second=micros)
def test_confidence_falls_with_time_and_kinds_move_forward(
    hold_s: int, days: int, first: timedelta, second: timedelta
) -> None:
    settings = SiteSettings(hold_s=hold_s, cooldown_days=days)
    earlier, later = sorted((first, second))
    a = attribute(in_pool(ended_ago(earlier), settings), T)
    b = attribute(in_pool(ended_ago(later), settings), T)
    order = [Kind.HELD, Kind.COOLED, Kind.UNATTRIBUTED]
    assert order.index(a.kind) <= order.index(b.kind)
    if a.kind is b.kind:
        assert a.confidence >= b.confidence
    for result in (a, b):
        check_range(result)


def check_range(result: Attribution) -> None:
    if result.kind is Kind.HELD:
        assert HELD_MIN <= result.confidence <= HELD_MAX
    elif result.kind is Kind.COOLED:
        assert COOLED_MIN <= result.confidence <= COOLED_MAX
    else:
        assert result.confidence == 0.0


@given(
    hold_s=st.integers(min_value=1, max_value=86_400), days=st.integers(min_value=1, max_value=60)
)
def test_confidence_spans_its_whole_range(hold_s: int, days: int) -> None:
    settings = SiteSettings(hold_s=hold_s, cooldown_days=days)
    hold, cooldown = timedelta(seconds=hold_s), timedelta(days=days)

    def confidence(ago: timedelta) -> float:
        return attribute(in_pool(ended_ago(ago), settings), T).confidence

    assert confidence(timedelta(0)) == HELD_MAX
    assert confidence(hold) == HELD_MIN
    if cooldown > hold:
        assert confidence(hold + US) <= COOLED_MAX
        assert confidence(cooldown) == COOLED_MIN


@given(
    assigned=st.integers(min_value=-(10**9), max_value=10**9).map(
        lambda n: timedelta(microseconds=n)
    ),
    length=st.none() | micros,
)
def test_a_lease_is_the_calls_only_from_its_assignment(
    assigned: timedelta, length: timedelta | None
) -> None:
    last = lease(assigned=assigned, ended=None if length is None else assigned + length)
    result = attribute(in_pool(last), T)
    if assigned > timedelta(0):
        assert result.kind is Kind.UNATTRIBUTED and result.lease is None
    else:
        assert result.kind.tracked or result.kind is Kind.UNATTRIBUTED
        if length is None or assigned + length > timedelta(0):
            assert result.kind is Kind.DYNAMIC and result.confidence == 1.0

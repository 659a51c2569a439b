"""Site reports against a hand-computed data set, and the report's rules one table at a time.

The data set spans two days of Europe/Moscow (UTC+3, no DST): 2024-01-31 and 2024-02-01 MSK,
i.e. [2024-01-30T21:00Z, 2024-02-01T21:00Z). Several calls sit where the UTC day or month differs
from Moscow's, so figures taken in the wrong time zone come out different.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from calltracking.core.errors import InvalidInput
from calltracking.core.kinds import AttributionKind as K
from calltracking.core.kinds import CallStatus as S
from calltracking.core.records import CallRecord, SessionInfo
from calltracking.core.reports import (
    DisplayPeriod,
    PoolFacts,
    PoolSample,
    VisitRecord,
    advise_idle_timeout,
    advise_pool_size,
    advise_show_delay,
    build_report,
    delay_figures,
    is_first_time_caller,
    is_lead,
    match_display,
    month_bounds,
    month_leads,
    percentile,
    pool_facts,
)
from calltracking.core.reports.delays import bucket_index
from calltracking.core.reports.figures import by_source
from calltracking.core.settings import SiteSettings

Json = dict[str, Any]
MSK = ZoneInfo("Europe/Moscow")
SINCE = datetime(2024, 1, 30, 21, 0, tzinfo=UTC)  # 2024-01-31 00:00 MSK
UNTIL = datetime(2024, 2, 1, 21, 0, tzinfo=UTC)  # 2024-02-02 00:00 MSK
INITIAL_NO, EXPIRED_NO, UNTRACKED_NO = "+74950000001", "+74950000002", "+74950000003"
GOOGLE = SessionInfo(source="google", medium="cpc", campaign="spring")
YANDEX = SessionInfo(source="yandex", medium="organic")
SETTINGS = SiteSettings(show_delay_s=30, idle_timeout_s=600, pool_min=0, pool_max=20)


def utc(day: str, clock: str) -> datetime:
    return datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=UTC)


def call(
    id: str,
    at: datetime,
    kind: K,
    status: S = S.ANSWERED,
    *,
    did: str = "+74951110001",
    caller: str | None = None,
    session: SessionInfo | None = None,
    lead: bool = False,
    spam: bool = False,
    static_label: str | None = None,
) -> CallRecord:
    return CallRecord(
        id=id, account_id="acc", site_id="site", did=did, caller=caller, started_at=at,
        status=status, kind=kind, confidence=1.0, session=session, lead=lead, spam=spam,
        static_label=static_label,
    )  # fmt: skip


def visit(
    id: str, visitor: str, at: datetime, src: str, med: str, camp: str | None, got: bool
) -> VisitRecord:
    return VisitRecord(id, visitor, at, src, med, camp, got)


def display(
    visitor: str, kind: str, e164: str, start: datetime, end: datetime | None, anchor: datetime
) -> DisplayPeriod:
    return DisplayPeriod(visitor, kind, e164, start, end, anchor)


# Times in UTC; the comment gives Moscow time where the day or month differs.
CALLS = [
    call("c01", utc("2024-01-30", "21:40"), K.DYNAMIC, caller="+79990000001", session=GOOGLE,
         lead=True),  # Jan 31 00:40 MSK: Moscow's Jan 31, UTC's Jan 30
    call("c02", utc("2024-01-31", "09:20"), K.HELD, S.MISSED, caller="+79990000002",
         session=GOOGLE, lead=True),
    call("c03", utc("2024-01-31", "20:30"), K.COOLED, caller="+79990000003", session=YANDEX,
         lead=True),  # Jan 31 23:30 MSK
    call("c04", utc("2024-01-31", "21:30"), K.DYNAMIC, caller="+79990000004", session=YANDEX,
         lead=True),  # Feb 1 00:30 MSK: Moscow's February, UTC's January
    call("c05", utc("2024-01-31", "10:00:20"), K.INITIAL, did=INITIAL_NO),  # d1: 20 s
    call("c06", utc("2024-02-01", "08:00:10"), K.INITIAL, did=INITIAL_NO),  # d4: 10 s
    call("c07", utc("2024-02-01", "12:00"), K.INITIAL, S.BUSY, did=INITIAL_NO),  # unmatched
    call("c08", utc("2024-01-31", "11:10"), K.EXPIRED, did=EXPIRED_NO),  # d5: 600 s
    call("c09", utc("2024-01-31", "11:01:30"), K.EXPIRED, did=EXPIRED_NO),  # d5: 90 s
    call("c10", utc("2024-02-01", "15:00"), K.EXPIRED, S.FAILED, did=EXPIRED_NO),  # unmatched
    call("c11", utc("2024-02-01", "10:00"), K.UNTRACKED, S.MISSED, did=UNTRACKED_NO),
    call("c12", utc("2024-02-01", "11:00"), K.UNATTRIBUTED, S.MISSED, did="+74951110005"),
    call("c13", utc("2024-02-01", "12:30"), K.STATIC, did="+74957770011",
         static_label="avito/listing"),
    # Marked spam after it became a lead: out of every figure, leads and missed included.
    call("c14", utc("2024-01-31", "12:00"), K.DYNAMIC, S.MISSED, caller="+79990000009",
         session=GOOGLE, lead=True, spam=True),
    # Spam on the initial number, inside C's display: must not reach the delays either.
    call("c19", utc("2024-01-31", "10:00:25"), K.INITIAL, did=INITIAL_NO, spam=True),
    call("c15", utc("2024-02-01", "13:00"), K.DYNAMIC, caller="+79990000001", session=GOOGLE,
         lead=True),  # c01's caller again, but in a new month: a lead again
    call("c16", utc("2024-02-01", "14:00"), K.DYNAMIC, S.RINGING, caller="+79990000004",
         session=GOOGLE),  # c04's caller again in the same month: no lead
    call("c17", UNTIL, K.DYNAMIC, caller="+79990000007", session=GOOGLE,
         lead=True),  # Feb 2 00:00 MSK: `until` is excluded
    call("c18", SINCE - timedelta(minutes=1), K.DYNAMIC, caller="+79990000008", session=GOOGLE,
         lead=True),  # Jan 30 23:59 MSK: before `since`
]  # fmt: skip

VISITS = [
    visit("v1", "A", utc("2024-01-30", "21:30"), "google", "cpc", "spring", True),
    visit("v2", "B", utc("2024-01-31", "09:00"), "google", "cpc", "spring", True),
    visit("v3", "C", utc("2024-01-31", "10:00"), "yandex", "organic", None, False),
    visit("v4", "A", utc("2024-02-01", "08:00"), "yandex", "organic", None, True),
    visit("v5", "D", utc("2024-01-30", "20:00"), "(direct)", "(none)", None, True),  # before
    visit("v6", "E", UNTIL, "vk", "social", None, True),  # at `until`: excluded
    visit("v7", "H", utc("2024-02-01", "09:00"), "google", "cpc", "spring", True),
    visit("v8", "I", utc("2024-02-01", "09:30"), "google", "cpc", "spring", False),
    visit("v9", "J", utc("2024-02-01", "10:00"), "google", "cpc", "spring", True),
]

DISPLAYS = [
    # C's page showed the initial number 5 s after the visit began; delays count from the visit.
    display("C", "initial", INITIAL_NO, utc("2024-01-31", "10:00:05"),
            utc("2024-01-31", "10:00:30"), anchor=utc("2024-01-31", "10:00:00")),
    # Three visitors saw the initial number at 08:00:10; A's period started last and wins.
    display("F", "initial", INITIAL_NO, utc("2024-02-01", "07:59:00"),
            utc("2024-02-01", "08:05:00"), anchor=utc("2024-02-01", "07:59:00")),
    display("G", "initial", INITIAL_NO, utc("2024-02-01", "07:59:30"),
            utc("2024-02-01", "08:01:00"), anchor=utc("2024-02-01", "07:59:30")),
    display("A", "initial", INITIAL_NO, utc("2024-02-01", "08:00:00"),
            utc("2024-02-01", "08:00:30"), anchor=utc("2024-02-01", "08:00:00")),
    display("B", "expired", EXPIRED_NO, utc("2024-01-31", "11:00"),
            utc("2024-01-31", "12:00"), anchor=utc("2024-01-31", "11:00")),
    # Later, but another number: must not take c09.
    display("K", "expired", "+74950000009", utc("2024-01-31", "11:01"), None,
            anchor=utc("2024-01-31", "11:01")),
    # Covers c07's time on the initial number, but is of another kind: c07 stays unmatched.
    display("L", "expired", INITIAL_NO, utc("2024-02-01", "11:00"), None,
            anchor=utc("2024-02-01", "11:00")),
]  # fmt: skip

POOL = PoolFacts(size=10, peak_leased=10, exhaustion_count=2)


@pytest.fixture(scope="module")
def report() -> Json:
    built = build_report(CALLS, VISITS, DISPLAYS, POOL, SETTINGS, SINCE, UNTIL, MSK)
    body: Json = json.loads(json.dumps(built.to_json()))  # proves the body is plain JSON
    return body


def test_visits_count_the_window_and_visitors_with_a_number_count_once(report: Json) -> None:
    # v1, v2, v3, v4, v7, v8, v9 (v5 before `since`, v6 at `until`) = 7 visits;
    # got a number: A (twice: v1, v4), B, H, J = 4 visitors.
    assert report["visits"] == 7
    assert report["visitors_with_number"] == 4


def test_calls_by_kind_and_status_leave_spam_and_the_window_out(report: Json) -> None:
    # In the window: c01..c16 and c19 = 17; c14 and c19 are spam -> 15 counted.
    assert report["calls"] == {
        "by_kind": {
            "dynamic": 4,  # c01 c04 c15 c16
            "held": 1,  # c02
            "cooled": 1,  # c03
            "static": 1,  # c13
            "initial": 3,  # c05 c06 c07
            "expired": 3,  # c08 c09 c10
            "untracked": 1,  # c11
            "unattributed": 1,  # c12
            "unknown": 0,
        },
        "by_status": {
            "ringing": 1,  # c16
            "answered": 9,  # c01 c03 c04 c05 c06 c08 c09 c13 c15
            "missed": 3,  # c02 c11 c12
            "busy": 1,  # c07
            "failed": 1,  # c10
            "unknown": 0,
        },
        "total": 15,
        "spam": 2,
    }


def test_accuracy_is_tracked_over_dynamic_and_default_calls_with_static_apart(
    report: Json,
) -> None:
    # tracked = dynamic 4 + held 1 + cooled 1 = 6; counted = 15 - static 1 = 14; 6/14 = 0.4286
    assert report["accuracy"] == {"tracked": 6, "counted": 14, "ratio": 0.4286, "static": 1}


def test_accuracy_by_day_splits_days_in_the_account_time_zone(report: Json) -> None:
    # Jan 31 MSK: c01 c02 c03 tracked; c05 c08 c09 not -> 3/6 = 0.5
    # Feb 1 MSK: c04 c15 c16 tracked; c06 c07 c10 c11 c12 not; c13 static -> 3/8 = 0.375
    assert report["accuracy_by_day"] == [
        {"day": "2024-01-31", "tracked": 3, "counted": 6, "ratio": 0.5},
        {"day": "2024-02-01", "tracked": 3, "counted": 8, "ratio": 0.375},
    ]


def test_by_source_joins_visits_and_calls_and_converts_tracked_calls_per_visit(
    report: Json,
) -> None:
    # google/cpc/spring: visits v1 v2 v7 v8 v9 = 5, calls c01 c02 c15 c16 = 4 -> 4/5 = 0.8
    # yandex/organic: visits v3 v4 = 2, calls c03 c04 = 2 -> 2/2 = 1.0
    # avito/listing (static c13): no visits -> conversion null; untracked and spam calls: no row
    assert report["by_source"] == [
        {"source": "google", "medium": "cpc", "campaign": "spring", "visits": 5, "calls": 4,
         "tracked_calls": 4, "conversion": 0.8},
        {"source": "yandex", "medium": "organic", "campaign": None, "visits": 2, "calls": 2,
         "tracked_calls": 2, "conversion": 1.0},
        {"source": "avito/listing", "medium": "(static)", "campaign": None, "visits": 0,
         "calls": 1, "tracked_calls": 0, "conversion": None},
    ]  # fmt: skip


def _nonzero(buckets: list[Json]) -> dict[str, int]:
    return {b["label"]: b["calls"] for b in buckets if b["calls"]}


def test_untracked_calls_by_kind_and_their_delays_after_what_the_visitor_saw(
    report: Json,
) -> None:
    untracked = report["untracked"]
    assert untracked["by_kind"] == {"initial": 3, "expired": 3, "untracked": 1}
    # c05: 10:00:20 - anchor 10:00:00 = 20 s (not 15 s from the period start) -> 20-30;
    # c19 (25 s) is spam
    # c06: 08:00:10 - A's anchor 08:00:00 = 10 s (A started last of F, G, A) -> 10-20
    # c07: only L covers it, of kind expired -> unmatched
    assert _nonzero(untracked["initial_delays_s"]) == {"10-20": 1, "20-30": 1, "unmatched": 1}
    # c08: 11:10 - 11:00 = 600 s -> 600-1800; c09: 11:01:30 - 11:00 = 90 s (K is another
    # number) -> 90-120; c10: B's period ended at 12:00 -> unmatched
    assert _nonzero(untracked["expired_delays_s"]) == {"90-120": 1, "600-1800": 1, "unmatched": 1}
    labels = [b["label"] for b in untracked["initial_delays_s"]]
    assert labels == [
        "0-10", "10-20", "20-30", "30-45", "45-60", "60-90", "90-120", "120-180", "180-300",
        "300-600", "600-1800", "1800-3600", "3600+", "unmatched",
    ]  # fmt: skip


def test_leads_count_non_spam_lead_calls_per_month_of_the_account(report: Json) -> None:
    # c01 c02 c03 in January MSK; c04 (Jan 31 21:30Z = Feb 1 MSK) and c15 in February;
    # c14 is spam, c17 and c18 outside the window.
    assert report["leads"] == 5
    assert report["leads_by_month"] == [
        {"month": "2024-01", "leads": 3},
        {"month": "2024-02", "leads": 2},
    ]


def test_missed_lists_non_spam_missed_calls_newest_first(report: Json) -> None:
    # c12 (Feb 1 11:00Z), c11 (Feb 1 10:00Z), c02 (Jan 31 09:20Z); c14 is spam
    assert report["missed"] == {"count": 3, "ids": ["c12", "c11", "c02"]}


def test_pool_facts_and_advice_come_through(report: Json) -> None:
    assert report["pool"] == {"size": 10, "peak_leased": 10, "exhaustion_count": 2}
    advice = report["advice"]
    # 2 matched initial calls and 2 matched expired calls: too few, keep 30 s and 600 s.
    assert (advice["show_delay_s"]["value"], advice["show_delay_s"]["changed"]) == (30, False)
    assert advice["show_delay_s"]["reason"].startswith("Only 2 calls to the initial number")
    assert (advice["idle_timeout_s"]["value"], advice["idle_timeout_s"]["changed"]) == (600, False)
    # Ran out twice: max(10, 10) + max(2, ceil(10 * 20%)) = 12
    assert advice["pool_size"]["value"] == 12


@pytest.mark.parametrize(
    ("month", "expected"),
    [
        ("2024-01", ["c03", "c02", "c01", "c18"]),  # c18: Jan 30 23:59 MSK; c14 spam
        ("2024-02", ["c17", "c15", "c04"]),  # c17: Feb 2 00:00 MSK; c04: Feb 1 00:30 MSK
        ("2024-03", []),
    ],
)
def test_month_leads_takes_the_month_in_the_account_time_zone_newest_first(
    month: str, expected: list[str]
) -> None:
    assert [c.id for c in month_leads(CALLS, MSK, month)] == expected


@pytest.mark.parametrize("month", ["2024-13", "2024-1", "24-01", "2024-01-01", ""])
def test_month_leads_refuses_a_month_that_is_not_yyyy_mm(month: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        month_leads(CALLS, MSK, month)
    assert raised.value.field == "month"


def test_month_bounds_are_local_midnights_across_the_year_end() -> None:
    since, until = month_bounds("2024-12", MSK)
    assert since.astimezone(UTC) == datetime(2024, 11, 30, 21, 0, tzinfo=UTC)
    assert until.astimezone(UTC) == datetime(2024, 12, 31, 21, 0, tzinfo=UTC)


def test_an_empty_window_reports_zeros_null_ratios_and_keeps_every_setting() -> None:
    empty = build_report([], [], [], PoolFacts(0, 0, 0), SETTINGS, SINCE, UNTIL, MSK).to_json()
    assert empty["accuracy"] == {"tracked": 0, "counted": 0, "ratio": None, "static": 0}
    assert [d["day"] for d in empty["accuracy_by_day"]] == ["2024-01-31", "2024-02-01"]
    assert [d["ratio"] for d in empty["accuracy_by_day"]] == [None, None]
    assert empty["leads_by_month"] == [
        {"month": "2024-01", "leads": 0},
        {"month": "2024-02", "leads": 0},
    ]
    assert not any(rec["changed"] for rec in empty["advice"].values())


# -- lead and first-time-caller decisions -------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "spam", "caller", "previous", "expected"),
    [
        (K.DYNAMIC, False, "+79990000001", 0, True),
        (K.HELD, False, "+79990000001", 0, True),
        (K.COOLED, False, "+79990000001", 0, True),
        (K.DYNAMIC, False, "+79990000001", 1, False),  # not the first this month
        (K.DYNAMIC, True, "+79990000001", 0, False),  # spam
        (K.DYNAMIC, False, None, 0, False),  # withheld caller
        (K.DYNAMIC, False, "", 0, False),
        (K.STATIC, False, "+79990000001", 0, False),  # not tracked
        (K.INITIAL, False, "+79990000001", 0, False),
        (K.UNATTRIBUTED, False, "+79990000001", 0, False),
    ],
)
def test_a_lead_is_the_first_tracked_non_spam_call_of_a_known_caller_this_month(
    kind: K, spam: bool, caller: str | None, previous: int, expected: bool
) -> None:
    assert is_lead(kind, spam, caller, previous) is expected


@pytest.mark.parametrize(
    ("caller", "previous", "expected"),
    [("+79990000001", 0, True), ("+79990000001", 3, False), (None, 0, False)],
)
def test_a_first_time_caller_never_called_the_account_and_is_known(
    caller: str | None, previous: int, expected: bool
) -> None:
    assert is_first_time_caller(caller, previous) is expected


# -- delays: matching and buckets -------------------------------------------------------------

T0 = utc("2024-01-31", "10:00")


@pytest.mark.parametrize(
    ("offset_s", "expected_delay"),
    [
        (-1, None),  # before the period: unmatched
        (0, 0.0),  # at its start
        (60, 60.0),  # at its end: both ends count
        (61, None),  # after its end
    ],
)
def test_a_display_period_covers_its_call_from_start_to_end_inclusive(
    offset_s: int, expected_delay: float | None
) -> None:
    period = display("X", "expired", EXPIRED_NO, T0, T0 + timedelta(seconds=60), anchor=T0)
    at = T0 + timedelta(seconds=offset_s)
    figures = delay_figures([call("c", at, K.EXPIRED, did=EXPIRED_NO)], [period], "expired")
    if expected_delay is None:
        assert (figures.delays_s, figures.unmatched) == ((), 1)
    else:
        assert (figures.delays_s, figures.unmatched) == ((expected_delay,), 0)


MATCH_PERIODS = [
    display("P", "initial", INITIAL_NO, T0, None, anchor=T0),
    display("Q", "initial", INITIAL_NO, T0 + timedelta(seconds=30), None, anchor=T0),
    display("R", "expired", INITIAL_NO, T0 + timedelta(seconds=40), None, anchor=T0),
    display("S", "initial", EXPIRED_NO, T0 + timedelta(seconds=50), None, anchor=T0),
]


@pytest.mark.parametrize(
    ("offset_s", "kind", "did", "expected"),
    [
        (10, K.INITIAL, INITIAL_NO, "P"),  # only P has started
        (35, K.INITIAL, INITIAL_NO, "Q"),  # P and Q: Q started last
        (60, K.INITIAL, INITIAL_NO, "Q"),  # R is newer but of another kind, S of another number
        (60, K.EXPIRED, INITIAL_NO, "R"),
        (60, K.INITIAL, EXPIRED_NO, "S"),
        (10, K.EXPIRED, EXPIRED_NO, None),  # nothing of that kind and number
    ],
)
def test_a_call_matches_the_newest_covering_period_of_its_kind_and_number(
    offset_s: int, kind: K, did: str, expected: str | None
) -> None:
    found = match_display(call("c", T0 + timedelta(seconds=offset_s), kind, did=did), MATCH_PERIODS)
    assert (found.visitor_id if found else None) == expected


@pytest.mark.parametrize(
    ("delay_s", "label"),
    [(0, "0-10"), (9.9, "0-10"), (10, "10-20"), (30, "30-45"),
     (3599, "1800-3600"), (3600, "3600+"), (90000, "3600+")],
)  # fmt: skip
def test_delay_buckets_are_half_open(delay_s: float, label: str) -> None:
    figures = delay_figures([], [], "initial")
    labels = [b.label for b in figures.histogram]
    assert labels[bucket_index(delay_s)] == label


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([5, 1, 4, 2, 3], 10, 1),  # rank ceil(0.5) = 1
        ([5, 1, 4, 2, 3], 90, 5),  # rank ceil(4.5) = 5
        (list(range(1, 11)), 90, 9),  # rank 9 exactly
        (list(range(1, 21)), 10, 2),  # rank 2 exactly
        ([7], 50, 7),
    ],
)
def test_percentile_is_nearest_rank(values: list[int], p: int, expected: int) -> None:
    assert percentile(values, p) == expected


# -- advice: each rule on both sides of its threshold, and with too little data ---------------

# 14 initial-call delays; sorted: 12 20 25 28 31 33 36 38 41 44 47 60 75 90.
FOURTEEN = [12, 25, 31, 38, 44, 47, 60, 75, 20, 41, 36, 90, 33, 28]


@pytest.mark.parametrize(
    ("delays", "current", "expected"),
    [
        # 11 of 14 came before 50 s (all but 60 75 90); p10 = rank ceil(1.4) = 2 -> 20 s.
        (FOURTEEN, 50, 20),
        # 6 delays, 4 of them (10 12 14 16) before 30 s: most; p10 = rank 1 -> 10 -> 10 s.
        ([10, 12, 14, 16, 40, 50], 30, 10),
        # p10 = 9 s is rounded down, to 5 s (not to the nearer 10 s).
        ([9, 12, 14, 16, 40, 50], 30, 5),
        # 6 delays, 3 before 30 s: exactly half is not most -> keep.
        ([10, 12, 14, 40, 50, 60], 30, 30),
        # 5 delays (enough), 4 before 60 s; p10 = 7 -> rounded down to 5 s.
        ([7, 20, 33, 41, 80], 60, 5),
        # 4 delays: too few, whatever they say.
        ([1, 2, 3, 4], 60, 60),
        ([], 0, 0),
    ],
)
def test_show_delay_is_lowered_to_the_10th_percentile_when_most_calls_beat_the_delay(
    delays: list[float], current: int, expected: int
) -> None:
    advice = advise_show_delay(delays, current)
    assert (advice.value, advice.current, advice.changed) == (
        expected, current, expected != current
    )  # fmt: skip


@pytest.mark.parametrize(
    ("delays", "current", "reason"),
    [
        (FOURTEEN, 50, "14 calls reached the initial number, 11 of them within 50 s of the "
         "visit start: showing the number at 20 s would have tracked 13 of them."),
        ([10, 12, 14, 40, 50, 60], 30, "6 calls reached the initial number, 3 of them within "
         "30 s of the visit start: most callers waited longer than the delay, so a shorter one "
         "would not track them; keep 30 s."),
        ([1, 2, 3, 4], 60, "Only 4 calls to the initial number could be matched to a visitor "
         "who saw it; at least 5 are needed to advise; keep 60 s."),
    ],
)  # fmt: skip
def test_show_delay_advice_names_its_figures(
    delays: list[float], current: int, reason: str
) -> None:
    assert advise_show_delay(delays, current).reason == reason


# 10 expired-call delays after the revocation; 9 within 600 s, p90 = rank 9 = 580.
TEN = [30, 60, 120, 200, 240, 250, 300, 400, 580, 2000]


@pytest.mark.parametrize(
    ("delays", "current", "expected"),
    [
        (TEN, 600, 600 + 580),  # 9 of 10 within 600 s: raise by p90 580 s
        ([3, 700, 800, 900, 1000], 600, 600),  # 1 of 5 within: keep
        ([600, 600, 600, 700, 800], 600, 600 + 800),  # exactly 600 s is within: 3 of 5
        ([100, 200, 300, 700, 800, 900], 600, 600),  # 3 of 6: half is not most -> keep
        ([100, 200, 300, 400, 800, 900], 600, 600 + 900),  # 4 of 6: p90 = rank ceil(5.4) = 900
        ([1, 2, 3, 4, 6], 600, 610),  # p90 = 6 -> rounded up to 10 s
        ([0, 0, 0, 0, 0], 60, 65),  # p90 = 0 -> at least 5 s
        ([100, 100, 100, 100], 600, 600),  # 4 delays: too few
        ([10000] * 5, 80000, 86400),  # capped at a day
    ],
)
def test_idle_timeout_is_raised_by_the_90th_percentile_when_most_calls_came_soon(
    delays: list[float], current: int, expected: int
) -> None:
    assert advise_idle_timeout(delays, current).value == expected


def test_idle_timeout_advice_names_its_figures() -> None:
    assert advise_idle_timeout(TEN, 600).reason == (
        "10 calls reached the expired number, 9 of them within 10 min of the revocation: "
        "keeping idle numbers 9 min 40 s longer (19 min 40 s in all) would have tracked 9 of them."
    )


@pytest.mark.parametrize(
    ("pool", "visitors", "pool_min", "expected"),
    [
        (PoolFacts(10, 10, 3), 50, 0, 12),  # ran out: 10 + max(2, 2)
        (PoolFacts(20, 20, 1), 50, 0, 24),  # ran out: 20 + 20% = 24
        (PoolFacts(10, 8, 1), 2, 0, 12),  # ran out: evidence enough; based on size 10
        (PoolFacts(10, 0, 0), 4, 0, 10),  # too few visitors to judge: keep
        (PoolFacts(10, 4, 0), 5, 0, 6),  # peak 4 <= half of 10: 4 + 2 = 6
        (PoolFacts(10, 5, 0), 5, 0, 7),  # peak 5 = half: 5 + 2 = 7
        (PoolFacts(10, 6, 0), 50, 0, 10),  # peak 6 > half: fits
        (PoolFacts(10, 2, 0), 50, 8, 8),  # 2 + 2 = 4, but not below pool_min 8
        (PoolFacts(10, 2, 0), 50, 10, 10),  # pool_min is the size: keep
        (PoolFacts(40, 15, 0), 50, 0, 18),  # 15 + ceil(15 * 20%) = 18
    ],
)
def test_pool_size_grows_after_exhaustion_and_shrinks_when_far_too_big(
    pool: PoolFacts, visitors: int, pool_min: int, expected: int
) -> None:
    advice = advise_pool_size(pool, visitors, pool_min, pool_max=20)
    assert (advice.value, advice.current) == (expected, pool.size)


@pytest.mark.parametrize(
    ("pool", "visitors", "words"),
    [
        (PoolFacts(20, 20, 1), 50, "The pool ran out once"),
        (PoolFacts(20, 20, 1), 50, "above pool_max 20, raise it too"),
        (PoolFacts(10, 0, 0), 4, "Only 4 visitors got a number"),
        (PoolFacts(1, 0, 0), 1, "Only 1 visitor got a number"),
        (PoolFacts(1, 0, 0), 1, "keep 1 number."),
        (PoolFacts(1, 1, 0), 5, "At most 1 of 1 number was leased at once"),
        (PoolFacts(10, 4, 0), 5, "At most 4 of 10 numbers were leased at once"),
        (PoolFacts(10, 6, 0), 50, "the size fits; keep 10 numbers."),
    ],
)
def test_pool_size_advice_says_why(pool: PoolFacts, visitors: int, words: str) -> None:
    assert words in advise_pool_size(pool, visitors, pool_min=0, pool_max=20).reason


def test_by_source_leaves_spam_calls_out_even_when_given_them() -> None:
    calls = [
        call("a", T0, K.DYNAMIC, session=GOOGLE),
        call("b", T0, K.DYNAMIC, session=GOOGLE, spam=True),
    ]
    [row] = by_source(calls, [visit("v", "A", T0, "google", "cpc", "spring", True)])
    assert (row.calls, row.tracked_calls, row.conversion) == (1, 1, 1.0)


def test_pool_facts_take_the_newest_size_and_the_peak() -> None:
    samples = [
        PoolSample(T0 + timedelta(minutes=2), leased=3, size=12),
        PoolSample(T0, leased=7, size=8),
        PoolSample(T0 + timedelta(minutes=1), leased=5, size=10),
    ]
    assert pool_facts(samples, exhaustion_count=1) == PoolFacts(12, 7, 1)
    assert pool_facts([], exhaustion_count=0) == PoolFacts(0, 0, 0)


def msk(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=MSK)


@pytest.mark.parametrize(
    ("since", "until", "days", "months"),
    [
        ("2024-01-31", "2024-02-02", ["2024-01-31", "2024-02-01"], ["2024-01", "2024-02"]),
        # `until` at a local midnight excludes that day and, on the 1st, that month.
        ("2024-01-15", "2024-02-01", None, ["2024-01"]),
        ("2024-01-31T23:00", "2024-02-01T00:00:01", ["2024-01-31", "2024-02-01"],
         ["2024-01", "2024-02"]),
        ("2024-12-31", "2025-01-01", ["2024-12-31"], ["2024-12"]),
        ("2024-02-01", "2024-02-01", [], []),  # an empty window
        ("2024-02-02", "2024-02-01", [], []),  # a reversed one
    ],
)  # fmt: skip
def test_window_days_and_months_are_local_and_exclude_until(
    since: str, until: str, days: list[str] | None, months: list[str]
) -> None:
    body = build_report([], [], [], PoolFacts(0, 0, 0), SETTINGS, msk(since), msk(until), MSK)
    if days is not None:
        assert [d["day"] for d in body.to_json()["accuracy_by_day"]] == days
    assert [m["month"] for m in body.to_json()["leads_by_month"]] == months


def test_days_of_the_window_follow_the_account_time_zone() -> None:
    # [Jan 31 21:00Z, Feb 1 21:00Z) is exactly Feb 1 in Moscow, but two days in UTC.
    one_day = build_report(
        [], [], [], PoolFacts(0, 0, 0), SETTINGS, UNTIL - timedelta(days=1), UNTIL, MSK
    ).to_json()
    assert [d["day"] for d in one_day["accuracy_by_day"]] == [date(2024, 2, 1).isoformat()]


def test_robot_visits_are_counted_apart_and_never_dilute_conversion() -> None:
    at = utc("2024-01-31", "10:00")
    visits = [
        VisitRecord("v1", "human", at, "google", "cpc", None, True),
        VisitRecord("v2", "crawler", at, "google", "cpc", None, True, bot=True),
    ]
    calls = [call("c1", at, K.DYNAMIC, session=SessionInfo(source="google", medium="cpc"))]
    body = build_report(
        calls, visits, [], PoolFacts(1, 1, 0), SETTINGS, SINCE, UNTIL, MSK
    ).to_json()
    assert (body["visits"], body["bot_visits"], body["visitors_with_number"]) == (1, 1, 1)
    assert body["by_source"][0]["visits"] == 1 and body["by_source"][0]["conversion"] == 1.0

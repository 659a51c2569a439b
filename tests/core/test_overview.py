"""The overview: preset windows in the account's zone, the period before, figures and trends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from calltracking.core.kinds import AttributionKind as K
from calltracking.core.kinds import CallStatus as S
from calltracking.core.records import CallRecord, SessionInfo
from calltracking.core.reports import overview as ov

MSK = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 3, 10, 22, 30, tzinfo=UTC)  # 2026-03-11 01:30 in Moscow


def call(
    id: str,
    kind: K,
    status: S = S.ANSWERED,
    *,
    source: str | None = None,
    spam: bool = False,
    lead: bool = False,
    label: str | None = None,
) -> CallRecord:
    session = SessionInfo(source=source, medium="cpc") if source else None
    return CallRecord(
        id=id, account_id="acc", site_id="site", did="+74951110001", caller=None,
        started_at=NOW - timedelta(hours=1), status=status, kind=kind, confidence=1.0,
        session=session, lead=lead, spam=spam, static_label=label,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("preset", "since"),
    [
        ("today", datetime(2026, 3, 11, tzinfo=MSK)),  # Moscow's day, not UTC's 10th
        ("7d", datetime(2026, 3, 5, tzinfo=MSK)),
        ("30d", datetime(2026, 2, 10, tzinfo=MSK)),
    ],
)
def test_a_preset_runs_from_the_account_midnight_to_now(preset: str, since: datetime) -> None:
    assert ov.preset_window(preset, NOW, MSK) == (since, NOW)


def test_the_previous_period_has_the_same_length_and_ends_where_this_one_begins() -> None:
    since = datetime(2026, 3, 5, tzinfo=MSK)
    assert ov.previous_window(since, NOW) == (since - (NOW - since), since)


def test_figures_leave_spam_out_and_count_tracked_over_counted() -> None:
    calls = [
        call("a", K.DYNAMIC, source="google", lead=True),
        call("b", K.INITIAL, S.MISSED),
        call("c", K.STATIC, label="billboard/offline"),
        call("d", K.DYNAMIC, source="google", spam=True, lead=True),
    ]
    figures = ov.period_figures(calls, frozenset({"a", "d"}))
    assert figures.to_json() == {
        "calls": 3, "tracked": 1, "counted": 2, "tracked_share": 0.5, "leads": 1,
        "missed": 1, "target_calls": 1,
    }  # fmt: skip
    assert ov.period_figures(calls, None).target_calls is None
    before = [call("p1", K.DYNAMIC, source="google"), call("p2", K.DYNAMIC, source="google")]
    assert ov.top_sources(calls, before) == [
        {"source": "(no source)", "calls": 1, "previous_calls": 0, "trend": None},
        {"source": "billboard", "calls": 1, "previous_calls": 0, "trend": None},
        {"source": "google", "calls": 1, "previous_calls": 2, "trend": -0.5},
    ]


@pytest.mark.parametrize(
    ("now", "before", "expected"),
    [(12, 10, 0.2), (5, 10, -0.5), (3, 0, None), (None, 4, None), (0.5, 0.25, 1.0)],
)
def test_a_trend_is_the_relative_change_and_none_from_nothing(
    now: float | None, before: float | None, expected: float | None
) -> None:
    assert ov.change(now, before) == expected


def test_every_local_day_of_the_period_is_listed() -> None:
    since, until = ov.preset_window("7d", NOW, MSK)
    days = ov.per_day([call("a", K.DYNAMIC)], since, until, MSK)
    assert days[0]["day"] == "2026-03-05" and len(days) == 7
    assert days[-1] == {"day": "2026-03-11", "calls": 1}

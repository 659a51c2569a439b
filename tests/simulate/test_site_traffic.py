"""Stored facts to traffic rows (`simulate.site_traffic`), each rule on a hand-made case."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from calltracking.simulate.site_traffic import (
    CallFact,
    DisplayFact,
    SiteFacts,
    VisitFact,
    to_traffic,
)
from calltracking.simulate.traffic import VisitRow

SINCE = datetime(2026, 3, 1, tzinfo=UTC)
UNTIL = SINCE + timedelta(days=1)


def s(seconds: float) -> datetime:
    return SINCE + timedelta(seconds=seconds)


def visit(vid: str, visitor: str, start: float, seen: float) -> VisitFact:
    return VisitFact(vid, visitor, s(start), s(seen), "https://shop.example/", "")


def test_a_visit_ends_with_its_last_display_and_is_active_until_the_last_activity() -> None:
    facts = SiteFacts(
        [visit("v1", "a", 100, 150)],
        {"a": s(140)},
        [DisplayFact("a", "dynamic", "+74951110001", s(100), s(400))],
        [CallFact(s(200), "+74951110001", "dynamic", "a", "v1")],
    )
    traffic = to_traffic(facts, SINCE, UNTIL, 3600)
    assert traffic.rows == [VisitRow("a", 100, 400, 140, "https://shop.example/", "", 200)]
    assert traffic.left_out == {}


def test_a_revoked_visit_was_active_until_an_idle_timeout_before_the_revocation() -> None:
    facts = SiteFacts(
        [visit("v1", "a", 0, 10)],
        {"a": s(9000)},  # a later visit's activity, outside this one
        [
            DisplayFact("a", "dynamic", "+74951110001", s(0), s(700)),
            DisplayFact("a", "expired", "+74950009002", s(700), s(5000)),
        ],
        [],
    )
    (row,) = to_traffic(facts, SINCE, UNTIL, 600).rows
    assert (row.last_active_s, row.end_s) == (100, 5000)


def test_a_call_to_a_default_number_goes_to_the_last_visitor_shown_it() -> None:
    untracked = "+74950009003"
    facts = SiteFacts(
        [visit("v1", "a", 0, 50), visit("v2", "b", 10, 60)],
        {},
        [
            DisplayFact("a", "untracked", untracked, s(0), None),
            DisplayFact("b", "untracked", untracked, s(10), None),
        ],
        [CallFact(s(30), untracked, "untracked", None, None)],
    )
    rows = to_traffic(facts, SINCE, UNTIL, 3600).rows
    assert [r.call_at_s for r in rows] == [None, 30]
    assert rows[0].end_s == 86400  # a display still open ends at the window's end


def test_calls_without_a_visit_in_the_window_are_left_out_and_counted() -> None:
    facts = SiteFacts(
        [visit("v1", "a", 0, 50)],
        {},
        [],
        [
            CallFact(s(10), "+74951110009", "unattributed", None, None),
            CallFact(s(20), "+74950009001", "initial", None, None),  # nobody was shown it
            CallFact(s(30), "+74951110001", "dynamic", "a", "v1"),
            CallFact(s(40), "+74951110001", "dynamic", "a", "v1"),
            CallFact(s(50), "+74951110002", "cooled", "z", "old-visit"),
        ],
    )
    traffic = to_traffic(facts, SINCE, UNTIL, 3600)
    assert traffic.calls_seen == 5
    assert traffic.rows[0].call_at_s == 30
    assert traffic.left_out == {
        "unattributed call": 1,
        "no visitor known": 1,
        "second call of a visit": 1,
        "visit began before the window": 1,
    }

"""The counted figures of a site report: calls by kind and status, accuracy, sources, missed calls.

Rules (CONTRACT.md, "Attribution kinds"):
- Spam calls are left out of every figure here; `CallCounts.spam` says how many there were.
- Tracked calls are `dynamic`, `held`, `cooled`. Accuracy = tracked / counted, where counted are
  the calls to the site's dynamic and default numbers: `dynamic`, `held`, `cooled`, `initial`,
  `expired`, `untracked` and `unattributed`. `static` calls are counted apart, `unknown` ones
  (no site) not at all. The ratio is None when nothing was counted; ratios are rounded to 4 places.
- Days are the account's (`tz`); every day of the window is listed, empty ones included.
- by_source rows are keyed by (source, medium, campaign): visits by the visit's own tags, calls by
  the attributed session; a `static` call counts under its label as source, medium "(static)".
  conversion = tracked calls / visits, None without visits. Rows: most calls first.
- Missed calls are those of status `missed`; their ids are listed newest first, at most
  MISSED_IDS_LIMIT of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Any

from calltracking.core.kinds import AttributionKind, CallStatus
from calltracking.core.records import CallRecord
from calltracking.core.reports.inputs import VisitRecord
from calltracking.core.reports.localtime import day_of, days_between

COUNTED_KINDS = frozenset(AttributionKind) - {AttributionKind.STATIC, AttributionKind.UNKNOWN}
STATIC_MEDIUM = "(static)"
MISSED_IDS_LIMIT = 100

SourceKey = tuple[str, str, str | None]


def ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


@dataclass(frozen=True, slots=True)
class CallCounts:
    by_kind: tuple[tuple[AttributionKind, int], ...]
    by_status: tuple[tuple[CallStatus, int], ...]
    total: int
    spam: int

    def to_json(self) -> dict[str, Any]:
        return {
            "by_kind": {str(k): n for k, n in self.by_kind},
            "by_status": {str(s): n for s, n in self.by_status},
            "total": self.total,
            "spam": self.spam,
        }


@dataclass(frozen=True, slots=True)
class Accuracy:
    tracked: int
    counted: int
    static: int

    @property
    def ratio(self) -> float | None:
        return ratio(self.tracked, self.counted)

    def to_json(self) -> dict[str, Any]:
        return {
            "tracked": self.tracked,
            "counted": self.counted,
            "ratio": self.ratio,
            "static": self.static,
        }


@dataclass(frozen=True, slots=True)
class DayAccuracy:
    day: date
    tracked: int
    counted: int

    def to_json(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "tracked": self.tracked,
            "counted": self.counted,
            "ratio": ratio(self.tracked, self.counted),
        }


@dataclass(frozen=True, slots=True)
class SourceRow:
    source: str
    medium: str
    campaign: str | None
    visits: int
    calls: int
    tracked_calls: int

    @property
    def conversion(self) -> float | None:
        return ratio(self.tracked_calls, self.visits)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "medium": self.medium,
            "campaign": self.campaign,
            "visits": self.visits,
            "calls": self.calls,
            "tracked_calls": self.tracked_calls,
            "conversion": self.conversion,
        }


@dataclass(frozen=True, slots=True)
class Missed:
    count: int
    ids: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "ids": list(self.ids)}


def count_calls(calls: Sequence[CallRecord]) -> CallCounts:
    """Calls by kind and status (every kind and status listed); spam only counted as spam."""
    real = [c for c in calls if not c.spam]
    kinds = Counter(c.kind for c in real)
    statuses = Counter(c.status for c in real)
    return CallCounts(
        by_kind=tuple((k, kinds[k]) for k in AttributionKind),
        by_status=tuple((s, statuses[s]) for s in CallStatus),
        total=len(real),
        spam=len(calls) - len(real),
    )


def accuracy(calls: Iterable[CallRecord]) -> Accuracy:
    tracked = counted = static = 0
    for call in calls:
        if call.spam:
            continue
        static += call.kind == AttributionKind.STATIC
        counted += call.kind in COUNTED_KINDS
        tracked += call.kind.tracked
    return Accuracy(tracked=tracked, counted=counted, static=static)


def accuracy_by_day(
    calls: Sequence[CallRecord], since: datetime, until: datetime, tz: tzinfo
) -> tuple[DayAccuracy, ...]:
    per_day: dict[date, list[CallRecord]] = {day: [] for day in days_between(since, until, tz)}
    for call in calls:
        per_day.setdefault(day_of(call.started_at, tz), []).append(call)
    days = []
    for day, day_calls in sorted(per_day.items()):
        figures = accuracy(day_calls)
        days.append(DayAccuracy(day, figures.tracked, figures.counted))
    return tuple(days)


def by_source(calls: Sequence[CallRecord], visits: Sequence[VisitRecord]) -> tuple[SourceRow, ...]:
    visit_counts = Counter(_key(v.source, v.medium, v.campaign) for v in visits)
    call_counts: Counter[SourceKey] = Counter()
    tracked_counts: Counter[SourceKey] = Counter()
    for call in calls:
        key = _call_key(call)
        if key is None or call.spam:
            continue
        call_counts[key] += 1
        tracked_counts[key] += call.kind.tracked
    rows = [
        SourceRow(
            *key,
            visits=visit_counts[key],
            calls=call_counts[key],
            tracked_calls=tracked_counts[key],
        )
        for key in visit_counts.keys() | call_counts.keys()
    ]
    rows.sort(key=lambda r: (-r.calls, -r.visits, r.source, r.medium, r.campaign or ""))
    return tuple(rows)


def _call_key(call: CallRecord) -> SourceKey | None:
    if call.kind == AttributionKind.STATIC:
        return _key(call.static_label or str(AttributionKind.STATIC), STATIC_MEDIUM, None)
    if call.session is None:
        return None
    return _key(call.session.source, call.session.medium, call.session.campaign)


def _key(source: str, medium: str, campaign: str | None) -> SourceKey:
    return (source, medium, campaign or None)


def missed(calls: Sequence[CallRecord]) -> Missed:
    found = sorted(
        (c for c in calls if c.status == CallStatus.MISSED and not c.spam),
        key=lambda c: (c.started_at, c.id),
        reverse=True,
    )
    return Missed(count=len(found), ids=tuple(c.id for c in found[:MISSED_IDS_LIMIT]))

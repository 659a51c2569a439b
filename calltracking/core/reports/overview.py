"""An overview of a site's or an account's calls for a period, against the period before it.

Rules:
- Presets are days in the account's zone: `today` is from its midnight to now, `7d` and `30d`
  the last 7 or 30 days counting today (from midnight 6 or 29 days ago to now). A custom window
  is [since, until) as given.
- The previous period has the same length and ends where this one begins.
- Spam is left out of every figure. `calls` are all other calls; `tracked_share` is tracked /
  counted as in the report's accuracy (figures.py); `leads` count like the report's leads;
  `missed` are calls of status missed; `target_calls` only when the account has a rule.
- A trend is the relative change (0.25 = 25 % more); None when the previous figure is 0 or
  missing (no percentage of nothing).
- `top_sources`: the TOP_SOURCES sources with most calls (visit source, or a static number's
  label), ties by name; `per_day`: calls per local day of the period, every day listed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo
from typing import Any

from calltracking.core.kinds import AttributionKind, CallStatus
from calltracking.core.records import CallRecord
from calltracking.core.reports.figures import accuracy
from calltracking.core.reports.leads import counts_as_lead
from calltracking.core.reports.localtime import day_of, days_between

PRESETS = {"today": 1, "7d": 7, "30d": 30}
TOP_SOURCES = 5
NO_SOURCE = "(no source)"


def preset_window(preset: str, now: datetime, tz: tzinfo) -> tuple[datetime, datetime]:
    """[since, until) of a preset: from local midnight `PRESETS[preset] - 1` days ago to now."""
    first_day = day_of(now, tz) - timedelta(days=PRESETS[preset] - 1)
    return datetime.combine(first_day, time(), tzinfo=tz), now


def previous_window(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    return since - (until - since), since


@dataclass(frozen=True, slots=True)
class PeriodFigures:
    calls: int
    tracked: int
    counted: int
    leads: int
    missed: int
    target_calls: int | None

    @property
    def tracked_share(self) -> float | None:
        return None if self.counted == 0 else round(self.tracked / self.counted, 4)

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "tracked": self.tracked,
            "counted": self.counted,
            "tracked_share": self.tracked_share,
            "leads": self.leads,
            "missed": self.missed,
            "target_calls": self.target_calls,
        }


def period_figures(calls: Sequence[CallRecord], target_ids: frozenset[str] | None) -> PeriodFigures:
    real = [c for c in calls if not c.spam]
    acc = accuracy(real)
    return PeriodFigures(
        calls=len(real),
        tracked=acc.tracked,
        counted=acc.counted,
        leads=sum(1 for c in real if counts_as_lead(c)),
        missed=sum(1 for c in real if c.status == CallStatus.MISSED),
        target_calls=None if target_ids is None else sum(1 for c in real if c.id in target_ids),
    )


def change(now: float | None, before: float | None) -> float | None:
    if now is None or before is None or before == 0:
        return None
    return round((now - before) / before, 4)


def trends(current: PeriodFigures, previous: PeriodFigures) -> dict[str, float | None]:
    a, b = current.to_json(), previous.to_json()
    return {key: change(a[key], b[key]) for key in a if key not in ("tracked", "counted")}


def source_of(call: CallRecord) -> str:
    if call.kind == AttributionKind.STATIC and call.static_label:
        return call.static_label.split("/", 1)[0]
    return call.session.source if call.session is not None else NO_SOURCE


def top_sources(
    calls: Sequence[CallRecord], previous: Sequence[CallRecord] = ()
) -> list[dict[str, Any]]:
    """The sources with most calls now, each with its calls in the previous period and trend."""
    counts = Counter(source_of(c) for c in calls if not c.spam)
    before = Counter(source_of(c) for c in previous if not c.spam)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_SOURCES]
    return [
        {
            "source": source,
            "calls": n,
            "previous_calls": before[source],
            "trend": change(n, before[source]),
        }
        for source, n in ranked
    ]


def per_day(
    calls: Sequence[CallRecord], since: datetime, until: datetime, tz: tzinfo
) -> list[dict[str, Any]]:
    counts = Counter(day_of(c.started_at, tz) for c in calls if not c.spam)
    return [{"day": d.isoformat(), "calls": counts[d]} for d in days_between(since, until, tz)]

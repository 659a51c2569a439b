"""A site's report for one window: `build_report` gathers every figure, `SiteReport.to_json`
gives the body of `GET /api/v1/sites/{id}/report`.

Rules:
- The window is [since, until): calls and visits starting in it are counted, the rest ignored.
  Display periods are not cut to the window (a call just after `since` may come from a period
  that began before it), so the store passes those that may cover the window's calls.
- Spam calls are excluded everywhere (figures.py); `calls.spam` says how many were left out.
- Days and months are the account's `tz`.
- Robots' visits are left out of visits, visitors and conversion, and counted apart
  (`bot_visits`), so a crawler does not dilute the conversion of a source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from calltracking.core.kinds import AttributionKind
from calltracking.core.records import CallRecord
from calltracking.core.reports.advice import (
    Advice,
    advise_idle_timeout,
    advise_pool_size,
    advise_show_delay,
)
from calltracking.core.reports.delays import DelayFigures, delay_figures
from calltracking.core.reports.figures import (
    Accuracy,
    CallCounts,
    DayAccuracy,
    Missed,
    SourceRow,
    accuracy,
    accuracy_by_day,
    by_source,
    count_calls,
    missed,
)
from calltracking.core.reports.inputs import DisplayPeriod, PoolFacts, VisitRecord
from calltracking.core.reports.leads import MonthLeads, counts_as_lead, leads_by_month
from calltracking.core.settings import SiteSettings

_DEFAULT_KINDS = (AttributionKind.INITIAL, AttributionKind.EXPIRED, AttributionKind.UNTRACKED)


@dataclass(frozen=True, slots=True)
class Untracked:
    """Calls to the default numbers and, for initial and expired, when they came."""

    by_kind: tuple[tuple[AttributionKind, int], ...]
    initial: DelayFigures
    expired: DelayFigures

    def to_json(self) -> dict[str, Any]:
        return {
            "by_kind": {str(k): n for k, n in self.by_kind},
            "initial_delays_s": [b.to_json() for b in self.initial.histogram],
            "expired_delays_s": [b.to_json() for b in self.expired.histogram],
        }


@dataclass(frozen=True, slots=True)
class SiteReport:
    since: datetime
    until: datetime
    timezone: str
    visits: int
    bot_visits: int
    visitors_with_number: int
    calls: CallCounts
    accuracy: Accuracy
    accuracy_by_day: tuple[DayAccuracy, ...]
    by_source: tuple[SourceRow, ...]
    untracked: Untracked
    leads: int
    leads_by_month: tuple[MonthLeads, ...]
    missed: Missed
    pool: PoolFacts
    advice: Advice

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "timezone": self.timezone,
            "visits": self.visits,
            "bot_visits": self.bot_visits,
            "visitors_with_number": self.visitors_with_number,
            "calls": self.calls.to_json(),
            "accuracy": self.accuracy.to_json(),
            "accuracy_by_day": [d.to_json() for d in self.accuracy_by_day],
            "by_source": [r.to_json() for r in self.by_source],
            "untracked": self.untracked.to_json(),
            "leads": self.leads,
            "leads_by_month": [m.to_json() for m in self.leads_by_month],
            "missed": self.missed.to_json(),
            "pool": self.pool.to_json(),
            "advice": self.advice.to_json(),
        }


def build_report(
    calls: Sequence[CallRecord],
    visits: Sequence[VisitRecord],
    displays: Sequence[DisplayPeriod],
    pool: PoolFacts,
    settings: SiteSettings,
    since: datetime,
    until: datetime,
    tz: tzinfo,
) -> SiteReport:
    """Every figure of the site's report for [since, until) (see the module rules)."""
    window_calls = [c for c in calls if since <= c.started_at < until]
    real_calls = [c for c in window_calls if not c.spam]
    in_window = [v for v in visits if since <= v.started_at < until]
    window_visits = [v for v in in_window if not v.bot]
    with_number = len({v.visitor_id for v in window_visits if v.got_number})
    initial = delay_figures(real_calls, displays, AttributionKind.INITIAL)
    expired = delay_figures(real_calls, displays, AttributionKind.EXPIRED)
    kinds = count_calls(real_calls).by_kind
    return SiteReport(
        since=since,
        until=until,
        timezone=str(tz),
        visits=len(window_visits),
        bot_visits=len(in_window) - len(window_visits),
        visitors_with_number=with_number,
        calls=count_calls(window_calls),
        accuracy=accuracy(real_calls),
        accuracy_by_day=accuracy_by_day(real_calls, since, until, tz),
        by_source=by_source(real_calls, window_visits),
        untracked=Untracked(
            by_kind=tuple((k, n) for k, n in kinds if k in _DEFAULT_KINDS),
            initial=initial,
            expired=expired,
        ),
        leads=sum(1 for c in real_calls if counts_as_lead(c)),
        leads_by_month=leads_by_month(real_calls, since, until, tz),
        missed=missed(real_calls),
        pool=pool,
        advice=Advice(
            show_delay_s=advise_show_delay(initial.delays_s, settings.show_delay_s),
            idle_timeout_s=advise_idle_timeout(expired.delays_s, settings.idle_timeout_s),
            pool_size=advise_pool_size(pool, with_number, settings.pool_min, settings.pool_max),
        ),
    )

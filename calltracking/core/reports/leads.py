"""Leads: what the business bills, counted per calendar month of the account's time zone.

Rules (CONTRACT.md, "A call"):
- `lead`: the call is the caller number's first tracked (dynamic, held, cooled), non-spam call in
  the account's calendar month. A withheld caller is never a lead.
- `first_time_caller`: the caller number never called this account before (ever; Metrika's
  meaning). A withheld caller is never a first-time caller (it cannot be told apart).
- A call marked spam after it became a lead leaves the leads: readers filter `spam` themselves
  rather than trusting the stored `lead` flag alone.
- Months are "YYYY-MM" in the account's time zone; `since` inclusive, `until` exclusive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from calltracking.core.kinds import AttributionKind
from calltracking.core.records import CallRecord
from calltracking.core.reports.localtime import month_of, months_between, parse_month


@dataclass(frozen=True, slots=True)
class MonthLeads:
    month: str  # "YYYY-MM" in the account's time zone
    leads: int

    def to_json(self) -> dict[str, str | int]:
        return {"month": self.month, "leads": self.leads}


def is_lead(
    call_kind: AttributionKind,
    spam: bool,
    caller: str | None,
    previous_tracked_calls_this_month_by_caller: int,
) -> bool:
    """Decide `lead` for a new call; the count excludes spam calls and this call itself."""
    return (
        call_kind.tracked
        and not spam
        and bool(caller)
        and previous_tracked_calls_this_month_by_caller == 0
    )


def is_first_time_caller(caller: str | None, previous_calls_by_caller_ever: int) -> bool:
    """Decide `first_time_caller`: no earlier call of this caller to the account, of any kind."""
    return bool(caller) and previous_calls_by_caller_ever == 0


def counts_as_lead(call: CallRecord) -> bool:
    """A stored call that is billed: flagged a lead and not (since) marked spam."""
    return call.lead and not call.spam


def month_leads(calls: Sequence[CallRecord], tz: tzinfo, month: str) -> list[CallRecord]:
    """The leads of `month` in `tz`, newest first; InvalidInput when `month` is not YYYY-MM."""
    parse_month(month)
    leads = [c for c in calls if counts_as_lead(c) and month_of(c.started_at, tz) == month]
    return sorted(leads, key=lambda c: (c.started_at, c.id), reverse=True)


def leads_by_month(
    calls: Sequence[CallRecord], since: datetime, until: datetime, tz: tzinfo
) -> tuple[MonthLeads, ...]:
    """Leads per month of the window (months without leads included, with 0), oldest first."""
    counts = dict.fromkeys(months_between(since, until, tz), 0)
    for call in calls:
        if counts_as_lead(call) and since <= call.started_at < until:
            month = month_of(call.started_at, tz)
            counts[month] = counts.get(month, 0) + 1
    return tuple(MonthLeads(month, n) for month, n in counts.items())

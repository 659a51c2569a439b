"""A site's stored traffic as a traffic file, so it can be replayed at other pool sizes and
settings (`calltracking advise`). Pure: the store loads the facts, this turns them into rows.

Rules (each is also a sentence of `LIMITS`, shown with the advice):
- One row per visit started in [since, until); seconds count from `since`.
- A visit ends at the later of its `last_seen_at` and the end of the last number display its
  visitor saw that started within the visit (a display still open at `until` ends there).
- Its last activity: the visitor's `last_activity_at` when it falls within the visit; else, when
  the visit was shown `expired`, the revocation time less the idle timeout then in force; else
  the visit's end (activity is stored per visitor, not per visit).
- Calls: a call attributed to a visit is that visit's call (the caller is taken to be the
  attributed visitor). A call to a default number goes to the visitor shown that number at that
  moment (the one who saw it last, when several did). A visit replays at most one call (the
  first); calls that find no visit in the window (unattributed, static, visits begun before the
  window, nobody shown that default) are left out and counted.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from calltracking.simulate.traffic import VisitRow

LIMITS = (
    "The caller of a call the tracker attributed to a visitor is taken to be that visitor: a "
    "call attributed wrongly replays as that visitor's call, so the correct share is optimistic.",
    "A call to a default number is given to the visitor shown that number at that moment (the "
    "last to see it when several did).",
    "Activity is stored per visitor, not per visit: a visit's last activity is estimated from "
    "the visitor's last activity, a revocation, or the visit's last sign of life.",
    "A visit replays at most one call; calls with no visit in the window are left out.",
)


@dataclass(frozen=True, slots=True)
class VisitFact:
    visit_id: str
    visitor_id: str
    started_at: datetime
    last_seen_at: datetime
    landing_url: str
    referrer: str


@dataclass(frozen=True, slots=True)
class DisplayFact:
    visitor_id: str
    kind: str
    e164: str
    started_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True, slots=True)
class CallFact:
    started_at: datetime
    did: str
    kind: str
    visitor_id: str | None
    visit_id: str | None


@dataclass(frozen=True, slots=True)
class SiteFacts:
    visits: Sequence[VisitFact]
    last_activity: dict[str, datetime]
    displays: Sequence[DisplayFact]
    calls: Sequence[CallFact]


@dataclass(frozen=True, slots=True)
class SiteTraffic:
    rows: list[VisitRow]
    calls_seen: int
    left_out: dict[str, int] = field(default_factory=dict)  # reason -> calls


def to_traffic(
    facts: SiteFacts, since: datetime, until: datetime, idle_timeout_s: int
) -> SiteTraffic:
    visits = sorted(
        (v for v in facts.visits if since <= v.started_at < until), key=lambda v: v.started_at
    )
    displays: dict[str, list[DisplayFact]] = defaultdict(list)
    for d in sorted(facts.displays, key=lambda d: d.started_at):
        displays[d.visitor_id].append(d)
    per_visitor: dict[str, list[VisitFact]] = defaultdict(list)
    for v in visits:
        per_visitor[v.visitor_id].append(v)
    rows: dict[str, VisitRow] = {}
    for v in visits:
        siblings = per_visitor[v.visitor_id]
        rows[v.visit_id] = _row(v, siblings, displays, facts, (since, until), idle_timeout_s)
    by_number: dict[str, list[DisplayFact]] = defaultdict(list)
    for d in facts.displays:
        by_number[d.e164].append(d)
    left_out: Counter[str] = Counter()
    calls = [c for c in facts.calls if since <= c.started_at < until]
    for call in sorted(calls, key=lambda c: c.started_at):
        visit_id = _caller_visit(call, per_visitor, by_number)
        if visit_id is None or visit_id not in rows:
            left_out[_reason(call, visit_id)] += 1
            continue
        row = rows[visit_id]
        if row.call_at_s is not None:
            left_out["second call of a visit"] += 1
            continue
        at = max(row.start_s, (call.started_at - since).total_seconds())
        rows[visit_id] = _replace_call(row, at)
    return SiteTraffic(list(rows.values()), len(calls), dict(left_out))


def _row(
    visit: VisitFact,
    siblings: list[VisitFact],
    displays: dict[str, list[DisplayFact]],
    facts: SiteFacts,
    window: tuple[datetime, datetime],
    idle_timeout_s: int,
) -> VisitRow:
    since, until = window
    after = [s.started_at for s in siblings if s.started_at > visit.started_at]
    next_start = min(after, default=until)
    seen = [d for d in displays.get(visit.visitor_id, ()) if visit.started_at <= d.started_at]
    seen = [d for d in seen if d.started_at < next_start]
    end = max(visit.last_seen_at, visit.started_at)
    for d in seen:
        end = max(end, until if d.ended_at is None else d.ended_at)
    end = min(end, until)
    active = facts.last_activity.get(visit.visitor_id)
    if active is None or not visit.started_at <= active <= end:
        revoked = [d.started_at for d in seen if d.kind == "expired"]
        if revoked:
            active = max(visit.started_at, min(revoked) - timedelta(seconds=idle_timeout_s))
        else:
            active = end
    start_s = (visit.started_at - since).total_seconds()
    return VisitRow(
        visit.visitor_id,
        start_s,
        max(start_s, (end - since).total_seconds()),
        min(max(start_s, (active - since).total_seconds()), (end - since).total_seconds()),
        visit.landing_url,
        visit.referrer,
    )


def _caller_visit(
    call: CallFact,
    per_visitor: dict[str, list[VisitFact]],
    by_number: dict[str, list[DisplayFact]],
) -> str | None:
    if call.visit_id is not None:
        return call.visit_id
    visitor = call.visitor_id
    if visitor is None and call.kind in ("initial", "expired", "untracked"):
        visitor = _last_shown(call, by_number.get(call.did, []))
    if visitor is None:
        return None
    candidates = per_visitor.get(visitor, [])
    starts = [v.started_at for v in candidates]
    index = bisect.bisect_right(starts, call.started_at) - 1
    return candidates[index].visit_id if index >= 0 else None


def _last_shown(call: CallFact, shown: list[DisplayFact]) -> str | None:
    best: DisplayFact | None = None
    for d in shown:
        if d.started_at > call.started_at:
            continue
        if d.ended_at is not None and d.ended_at < call.started_at:
            continue
        if best is None or d.started_at > best.started_at:
            best = d
    return best.visitor_id if best is not None else None


def _reason(call: CallFact, visit_id: str | None) -> str:
    if call.kind in ("static", "unknown", "unattributed"):
        return f"{call.kind} call"
    if visit_id is None:
        return "no visitor known"
    return "visit began before the window"


def _replace_call(row: VisitRow, at: float) -> VisitRow:
    return VisitRow(
        row.visitor, row.start_s, row.end_s, row.last_active_s, row.url, row.referrer, at
    )

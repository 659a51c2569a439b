"""Visits (sessions) by Google Analytics' rules, so our reports and GA's agree.

Rules:
- A visit is over after `VISIT_IDLE` (30 minutes) with no open tab: the idle time counts from the
  last activity (or the last tab closing), and reaching 30:00 exactly ends it. While any tab is
  open the visit lives on, whatever the clock says.
- A new campaign starts a new visit: an incoming source whose source, medium or campaign differs
  from the current visit's. An incoming (direct)/(none) never replaces a known source (GA's
  "last non-direct click"): a visitor who comes back by typing the address keeps the visit.
- With no current visit, any arrival starts one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from calltracking.core.traffic import DIRECT, TrafficSource

VISIT_IDLE = timedelta(minutes=30)


def visit_is_over(last_seen_at: datetime, now: datetime, open_tabs: int) -> bool:
    """Whether the visit last seen at `last_seen_at` has ended by `now`."""
    if open_tabs > 0:
        return False
    return now - last_seen_at >= VISIT_IDLE


def starts_new_visit(current: TrafficSource | None, incoming: TrafficSource) -> bool:
    """Whether arriving from `incoming` starts a new visit rather than continuing `current`."""
    if current is None:
        return True
    if incoming.key == DIRECT.key:
        return False
    return incoming.key != current.key

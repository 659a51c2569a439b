"""Attribution of a call to number N at time t (CONTRACT.md, "Attribution kinds").

Decided once, when the call is first seen, then frozen:

    N is a default number of a site      -> initial | expired | untracked (first that matches)
    N is a static number of a site       -> static, confidence 1, the label is the source
    N is leased at t                     -> dynamic, confidence 1
    N's last lease ended <= hold_s ago   -> held, 0.9 falling linearly to 0.5 at the hold's end
    ... <= cooldown_days ago             -> cooled, 0.5 falling linearly to 0.05 at cool-down's end
    N is in a site's pool otherwise      -> unattributed, confidence 0
    N belongs to no site                 -> unknown, confidence 0

`hold_s` and `cooldown_days` are those of the site whose lease it was, as in force at call time.
A number back in the reserve but still cooling is still attributed to its last holder.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from calltracking.core.kinds import AttributionKind
from calltracking.core.settings import SiteSettings

HELD_MAX, HELD_MIN = 0.9, 0.5
COOLED_MAX, COOLED_MIN = 0.5, 0.05


@dataclass(frozen=True, slots=True)
class LeaseFacts:
    """The lease a call may belong to: the number's active or most recent lease."""

    lease_id: str
    site_id: str
    visitor_id: str
    visit_id: str | None
    assigned_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True, slots=True)
class NumberFacts:
    e164: str
    site_id: str | None  # the site whose pool or defaults hold N now (None: reserve / unknown)
    default_kinds: tuple[AttributionKind, ...] = ()  # in the order initial, expired, untracked
    static_label: str | None = None
    last_lease: LeaseFacts | None = None
    last_lease_settings: SiteSettings | None = None


@dataclass(frozen=True, slots=True)
class Attribution:
    kind: AttributionKind
    confidence: float
    site_id: str | None
    lease: LeaseFacts | None = None
    static_label: str | None = None


def attribute(number: NumberFacts, at: datetime) -> Attribution:
    if number.default_kinds:
        return Attribution(number.default_kinds[0], 1.0, number.site_id)
    if number.static_label is not None:
        return Attribution(
            AttributionKind.STATIC, 1.0, number.site_id, static_label=number.static_label
        )
    lease, settings = number.last_lease, number.last_lease_settings
    if lease is not None and settings is not None and lease.assigned_at <= at:
        if lease.ended_at is None or lease.ended_at > at:
            return Attribution(AttributionKind.DYNAMIC, 1.0, lease.site_id, lease)
        elapsed = at - lease.ended_at
        since_release = elapsed.total_seconds()
        if elapsed <= timedelta(seconds=settings.hold_s):
            confidence = _falling(since_release, settings.hold_s, HELD_MAX, HELD_MIN)
            return Attribution(AttributionKind.HELD, confidence, lease.site_id, lease)
        if elapsed <= timedelta(days=settings.cooldown_days):
            confidence = _falling(since_release, settings.cooldown_s, COOLED_MAX, COOLED_MIN)
            return Attribution(AttributionKind.COOLED, confidence, lease.site_id, lease)
    if number.site_id is not None:
        return Attribution(AttributionKind.UNATTRIBUTED, 0.0, number.site_id)
    return Attribution(AttributionKind.UNKNOWN, 0.0, None)


def _falling(elapsed: float, span: float, high: float, low: float) -> float:
    if span <= 0:
        return high
    share = min(1.0, max(0.0, elapsed / span))
    return round(high - (high - low) * share, 3)

"""Number allocation: which number a visitor gets, as a pure decision over a snapshot of the pool.

Order of preference (the rules of the product; LRU spreads reuse and so cuts misattribution of
late calls to a number's previous holder):

1. the visitor's own number: leased to them now, or still in their hold (all tabs share one lease);
2. a free pool number whose hold is over, the one released longest ago first (never used first);
3. grow the pool from the reserve, up to `pool_max` and the account's `max_numbers`, never taking a
   number still cooling down from another site;
4. under pressure, a number still in someone else's hold, released longest ago first;
5. take back the number of the lease idle the longest, if idle past `preempt_idle_s`;
6. none: the visitor sees `untracked` and the exhaustion is recorded.

Static numbers are never leased. The store applies the decision in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from calltracking.core.kinds import PoolState
from calltracking.core.settings import SiteSettings


@dataclass(frozen=True, slots=True)
class ActiveLease:
    lease_id: str
    visitor_id: str
    last_activity_at: datetime


@dataclass(frozen=True, slots=True)
class LastRelease:
    visitor_id: str
    site_id: str
    ended_at: datetime


@dataclass(frozen=True, slots=True)
class NumberSnapshot:
    """A number as allocation sees it. `site_id` None means it is in the reserve."""

    e164: str
    site_id: str | None
    static: bool = False
    lease: ActiveLease | None = None
    last_release: LastRelease | None = None
    cooling_site_id: str | None = None
    cooling_until: datetime | None = None


class Source(StrEnum):
    """Where an assigned number came from (the rule that chose it)."""

    OWN = "own"
    HOLD = "hold"
    FREE = "free"
    GROW = "grow"
    HELD_OTHER = "held_other"
    PREEMPT = "preempt"


@dataclass(frozen=True, slots=True)
class Assign:
    e164: str
    source: Source
    preempted_lease_id: str | None = None


@dataclass(frozen=True, slots=True)
class Exhausted:
    reason: str


Decision = Assign | Exhausted


def pool_state(number: NumberSnapshot, settings: SiteSettings, now: datetime) -> PoolState:
    if number.static:
        return PoolState.STATIC
    if number.lease is not None:
        return PoolState.LEASED
    if in_hold(number, settings, now):
        return PoolState.HELD
    return PoolState.FREE


def in_hold(number: NumberSnapshot, settings: SiteSettings, now: datetime) -> bool:
    release = number.last_release
    return release is not None and now - release.ended_at <= timedelta(seconds=settings.hold_s)


def is_cooling_for(number: NumberSnapshot, site_id: str, now: datetime) -> bool:
    """A reserve number still cooling down from another site may not join `site_id`'s pool."""
    return (
        number.cooling_until is not None
        and number.cooling_site_id is not None
        and number.cooling_site_id != site_id
        and now < number.cooling_until
    )


def allocate(
    *,
    site_id: str,
    visitor_id: str,
    pool: Sequence[NumberSnapshot],
    reserve: Sequence[NumberSnapshot],
    settings: SiteSettings,
    account_capacity: int,
    now: datetime,
) -> Decision:
    """Choose a number for `visitor_id` on `site_id`.

    `pool` is the site's pool (static numbers included); `reserve` the reserve numbers;
    `account_capacity` how many more numbers the account may still take into its pools.
    """
    leasable = [n for n in pool if not n.static]
    for number in leasable:
        if number.lease is not None and number.lease.visitor_id == visitor_id:
            return Assign(number.e164, Source.OWN)
    for number in leasable:
        release = number.last_release
        if (
            number.lease is None
            and release is not None
            and release.visitor_id == visitor_id
            and in_hold(number, settings, now)
        ):
            return Assign(number.e164, Source.HOLD)

    free = [n for n in leasable if n.lease is None and not in_hold(n, settings, now)]
    if free:
        return Assign(_released_longest_ago(free).e164, Source.FREE)

    if len(leasable) < settings.pool_max and account_capacity > 0:
        candidates = [n for n in reserve if not is_cooling_for(n, site_id, now)]
        if candidates:
            return Assign(_released_longest_ago(candidates).e164, Source.GROW)

    held = [n for n in leasable if n.lease is None]
    if held:
        return Assign(_released_longest_ago(held).e164, Source.HELD_OTHER)

    idle_limit = timedelta(seconds=settings.preempt_idle_s)
    idle = [
        n for n in leasable if n.lease is not None and now - n.lease.last_activity_at > idle_limit
    ]
    if idle:
        victim = min(idle, key=_idle_order)
        assert victim.lease is not None
        return Assign(victim.e164, Source.PREEMPT, preempted_lease_id=victim.lease.lease_id)

    return Exhausted("pool at its limit and every number in use")


def _released_longest_ago(numbers: Sequence[NumberSnapshot]) -> NumberSnapshot:
    """Never-used numbers first, then the earliest release; the number breaks ties."""

    def order(n: NumberSnapshot) -> tuple[int, float, str]:
        if n.last_release is None:
            return (0, 0.0, n.e164)
        return (1, n.last_release.ended_at.timestamp(), n.e164)

    return min(numbers, key=order)


def _idle_order(n: NumberSnapshot) -> tuple[float, str]:
    return (n.lease.last_activity_at.timestamp() if n.lease else 0.0, n.e164)


def revocation_due(last_activity_at: datetime, settings: SiteSettings) -> datetime:
    """When an idle lease is taken back: `idle_timeout_s` after the last activity in any tab."""
    return last_activity_at + timedelta(seconds=settings.idle_timeout_s)


def show_at(visit_started_at: datetime, settings: SiteSettings) -> datetime:
    """The moment the dynamic number may appear: `show_delay_s` after the visit began."""
    return visit_started_at + timedelta(seconds=settings.show_delay_s)

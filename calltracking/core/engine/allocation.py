"""Which number a visitor gets, over the engine's indexed pool, in the order of
`core.leases.allocate` (its docstring states the rules; a property test proves both agree), plus
one rule past it: under pressure, the address holding the most leases gives one back to a
visitor from an address holding at least two fewer, however busy its tabs keep them (an
`activity` flood from one address cannot hold a pool).

`Policy` switches the parts the seed article's policy does differently (the simulator's
baseline): a free number chosen at random, holds that never yield, no pre-emption, and
revocation counted from the assignment whatever the activity.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from calltracking.core.engine.pool import Lease, Number

if TYPE_CHECKING:
    from calltracking.core.engine.site import SiteEngine, Visitor


@dataclass(frozen=True, slots=True)
class Policy:
    random_free: bool = False
    holds_yield: bool = True
    preempt: bool = True
    activity_renews: bool = True

    @classmethod
    def seed(cls) -> Policy:
        return cls(random_free=True, holds_yield=False, preempt=False, activity_renews=False)


Choice = tuple[str, Lease | None]  # the number, and the lease it takes back (pre-emption)


def choose(engine: SiteEngine, visitor: Visitor, now: datetime) -> Choice | None:
    policy, pool, settings = engine.policy, engine.pool, engine.settings
    own = engine._own_hold(visitor, now)
    if own is not None:
        return own.e164, None
    hold = timedelta(seconds=settings.hold_s)
    first = pool.first_idle()
    if first is not None and _free(first, hold, now):
        if policy.random_free:
            return _random_free(engine, hold, now), None
        return first.e164, None
    if _may_grow(engine):
        return engine.reserve[0], None
    if first is not None and policy.holds_yield:
        return first.e164, None
    if not policy.preempt:
        return None
    idlest = pool.idlest()
    if idlest is not None and now - idlest.last_activity_at > timedelta(
        seconds=settings.preempt_idle_s
    ):
        return idlest.e164, idlest
    top, count = pool.top_address()
    held_here = pool.per_address[visitor.address] if visitor.address else 0
    # Only from an address holding at least two more: taking from an equal share would just
    # move the excess to the taker, and the next visitor would take it back.
    if top and count > held_here + 1 and top != visitor.address:  # "" is no address: never grouped
        victim = pool.idlest_of(top)
        if victim is not None:
            return victim.e164, victim
    return None


def has_room(engine: SiteEngine, now: datetime) -> bool:
    """Whether a new visitor would get a number now without taking one back: a free number
    (out of its hold), or room to grow the pool from the reserve offered. A split site's node
    sends new visitors to a part that has room before one that would make them wait or take a
    number back."""
    first = engine.pool.first_idle()
    hold = timedelta(seconds=engine.settings.hold_s)
    # The reserve as the last batch offered it: the next may offer more.
    return (first is not None and _free(first, hold, now)) or _may_grow(engine)


def spare_numbers(engine: SiteEngine) -> int:
    """About how many more visitors could get a number without taking one back: numbers not
    leased (holds among them) and the growth the reserve offered allows."""
    pool, settings = engine.pool, engine.settings
    growth = min(settings.pool_max - pool.leasable_count, engine.capacity, len(engine.reserve))
    return pool.leasable_count - len(pool.leases) + max(0, growth)


def _may_grow(engine: SiteEngine) -> bool:
    """Room in `pool_max` and the account, and a reserve number offered to grow by."""
    return (
        engine.pool.leasable_count < engine.settings.pool_max
        and engine.capacity > 0
        and bool(engine.reserve)
    )


def _free(number: Number, hold: timedelta, now: datetime) -> bool:
    return number.released_at is None or now - number.released_at > hold


def _random_free(engine: SiteEngine, hold: timedelta, now: datetime) -> str:
    free = sorted(
        n.e164
        for n in engine.pool.numbers.values()
        if not n.static and n.lease is None and _free(n, hold, now)
    )
    return engine.rng.choice(free)

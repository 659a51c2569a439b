"""Three engine edge cases found by the random-traffic test (tests/core/test_engine.py), pinned
as plain scenarios."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from calltracking.core.engine import SiteEngine, SiteRules
from calltracking.core.engine import events as ev
from calltracking.core.engine.pool import Number
from calltracking.core.kinds import AttributionKind, DisplayKind
from calltracking.core.settings import SiteSettings

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DEFAULTS = {
    AttributionKind.INITIAL: "+74950009001",
    AttributionKind.EXPIRED: "+74950009002",
    AttributionKind.UNTRACKED: "+74950009003",
}


def engine(pool: int, **settings: object) -> SiteEngine:
    counter = itertools.count(1)
    site = SiteEngine(
        SiteRules("s", SiteSettings(pool_max=pool, **settings), DEFAULTS),  # type: ignore[arg-type]
        ids=lambda: f"id{next(counter)}",
    )
    for n in range(1, pool + 1):
        site.pool.add(Number(f"+7495111{n:04d}"))
    return site


def opened(site: SiteEngine, visitor: str | None, address: str, at: datetime) -> str:
    effects = site.handle(ev.TabOpened(visitor, "t", address), at)
    return next(e.visitor_id for e in effects if isinstance(e, ev.Welcomed))


def test_a_want_after_the_last_tab_closed_leases_nothing() -> None:
    site = engine(2, lease_on="visible")
    visitor = opened(site, None, "192.0.2.1", T0)
    site.handle(ev.TabClosed(visitor, "t"), T0 + timedelta(seconds=1))
    effects = site.handle(ev.Want(visitor), T0 + timedelta(seconds=2))
    assert not [e for e in effects if isinstance(e, ev.LeaseStarted)]
    assert not site.pool.leases


def test_a_held_number_comes_back_only_while_the_address_is_under_its_cap() -> None:
    site = engine(4)  # cap: a quarter of pool_max, at least 1 -> 1 lease per address
    first = opened(site, None, "192.0.2.1", T0)
    site.handle(ev.TabClosed(first, "t"), T0 + timedelta(seconds=1))  # its number is held
    opened(site, None, "192.0.2.1", T0 + timedelta(seconds=2))  # the address's one lease
    opened(site, first, "192.0.2.1", T0 + timedelta(seconds=3))
    assert site.shown(first) == (DisplayKind.UNTRACKED, DEFAULTS[AttributionKind.UNTRACKED])
    assert site.pool.per_address["192.0.2.1"] == 1


def test_among_equally_idle_leases_the_lowest_number_is_the_idlest() -> None:
    site = engine(2)
    a = opened(site, None, "192.0.2.1", T0)
    opened(site, None, "192.0.2.2", T0)
    site.handle(ev.Activity(a, "t"), T0)  # same instant: a is no less idle than b
    idlest = site.pool.idlest()
    assert idlest is not None and idlest.e164 == "+74951110001"

"""Number allocation (core.leases): the order of preference as a table, then its invariants.

The table proves each rule of the order (CONTRACT.md, "Lifecycle" and "Attribution kinds") with one
row; the hypothesis properties check that no snapshot, however odd, makes allocation hand one
visitor's number to another, move a cooling number across sites, break the hold or LRU, or grow
past `pool_max`; the simulation applies each decision as the store would and checks that no two
visitors ever hold one number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calltracking.core.kinds import PoolState
from calltracking.core.leases import (
    ActiveLease,
    Assign,
    Decision,
    Exhausted,
    LastRelease,
    NumberSnapshot,
    Source,
    allocate,
    in_hold,
    is_cooling_for,
    pool_state,
    revocation_due,
    show_at,
)
from calltracking.core.settings import SiteSettings

SITE = "site-a"
OTHER_SITE = "site-b"
ME = "v-me"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)
ZERO = timedelta(0)
SETTINGS = SiteSettings(hold_s=1800, preempt_idle_s=600, pool_max=5)
HOLD = timedelta(seconds=SETTINGS.hold_s)
IDLE = timedelta(seconds=SETTINGS.preempt_idle_s)

A, B, C = "+74950000001", "+74950000002", "+74950000003"
R1, R2 = "+74950000101", "+74950000102"
S = "+74957770011"


def s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def fresh(e164: str) -> NumberSnapshot:
    """A pool number never leased."""
    return NumberSnapshot(e164, SITE)


def released(e164: str, by: str, ago: timedelta) -> NumberSnapshot:
    """A pool number whose last lease (to `by`) ended `ago` before NOW."""
    return NumberSnapshot(e164, SITE, last_release=LastRelease(by, SITE, NOW - ago))


def leased(e164: str, to: str, idle: timedelta) -> NumberSnapshot:
    """A pool number leased to `to`, whose last activity was `idle` before NOW."""
    return NumberSnapshot(e164, SITE, lease=ActiveLease(f"lease-{e164}", to, NOW - idle))


def static(e164: str) -> NumberSnapshot:
    return NumberSnapshot(e164, SITE, static=True)


def reserved(
    e164: str,
    *,
    cooling_for: str | None = None,
    cooling_left: timedelta = ZERO,
    released_ago: timedelta | None = None,
) -> NumberSnapshot:
    release = None
    if released_ago is not None:
        release = LastRelease("v-gone", cooling_for or OTHER_SITE, NOW - released_ago)
    return NumberSnapshot(
        e164,
        None,
        last_release=release,
        cooling_site_id=cooling_for,
        cooling_until=NOW + cooling_left if cooling_for else None,
    )


def decide(
    pool: Sequence[NumberSnapshot],
    reserve: Sequence[NumberSnapshot] = (),
    *,
    capacity: int = 10,
    settings: SiteSettings = SETTINGS,
    visitor: str = ME,
    now: datetime = NOW,
) -> Decision:
    return allocate(
        site_id=SITE,
        visitor_id=visitor,
        pool=pool,
        reserve=reserve,
        settings=settings,
        account_capacity=capacity,
        now=now,
    )


# --- the order, one rule a row ------------------------------------------------------------------

EXHAUSTED = "exhausted"
BUSY = s(10)  # a lease active 10 s ago: nowhere near preemption

ORDER_TABLE = [
    # 1. the visitor's own number
    pytest.param(
        [fresh(A), leased(B, ME, BUSY)], [], 10, SETTINGS, Assign(B, Source.OWN), id="own"
    ),
    pytest.param(
        [released(A, ME, s(60)), leased(B, ME, BUSY)],
        [],
        10,
        SETTINGS,
        Assign(B, Source.OWN),
        id="own-lease-before-own-hold",
    ),
    pytest.param(
        [fresh(A), released(B, "v-old", s(90_000)), released(C, ME, s(60))],
        [reserved(R1)],
        10,
        SETTINGS,
        Assign(C, Source.HOLD),
        id="own-hold-before-free-numbers",
    ),
    pytest.param(
        [fresh(A), released(B, ME, HOLD)],
        [],
        10,
        SETTINGS,
        Assign(B, Source.HOLD),
        id="own-hold-at-its-last-instant",
    ),
    pytest.param(
        [released(B, ME, HOLD + US)],
        [reserved(R1)],
        10,
        SETTINGS,
        Assign(B, Source.FREE),
        id="own-hold-over-number-is-merely-free",
    ),
    # 2. a free pool number, longest released first, never used first, ties by number
    pytest.param(
        [released(A, "v2", s(90_000)), fresh(C), fresh(B)],
        [],
        10,
        SETTINGS,
        Assign(B, Source.FREE),
        id="free-never-used-first-then-by-number",
    ),
    pytest.param(
        [released(A, "v2", s(5000)), released(B, "v3", s(9000)), released(C, "v4", s(3000))],
        [],
        10,
        SETTINGS,
        Assign(B, Source.FREE),
        id="free-longest-released-first",
    ),
    pytest.param(
        [released(C, "v2", s(5000)), released(B, "v3", s(5000))],
        [],
        10,
        SETTINGS,
        Assign(B, Source.FREE),
        id="free-same-release-time-by-number",
    ),
    pytest.param(
        [released(A, "v2", s(5000) + US), released(B, "v3", s(5000))],
        [],
        10,
        SETTINGS,
        Assign(A, Source.FREE),
        id="free-one-microsecond-older-wins",
    ),
    pytest.param(
        [released(A, "v2", HOLD)],
        [reserved(R1)],
        10,
        SETTINGS,
        Assign(R1, Source.GROW),
        id="hold-not-over-is-not-free",
    ),
    pytest.param(
        [released(A, "v2", HOLD + US)],
        [reserved(R1)],
        10,
        SETTINGS,
        Assign(A, Source.FREE),
        id="hold-over-is-free",
    ),
    # 3. grow from the reserve, LRU, within pool_max and the account's capacity
    pytest.param(
        [leased(A, "v2", BUSY)],
        [reserved(R2, released_ago=s(90_000)), reserved(R1, released_ago=s(80_000))],
        10,
        SETTINGS,
        Assign(R2, Source.GROW),
        id="grow-longest-released-first",
    ),
    pytest.param(
        [leased(A, "v2", BUSY)],
        [reserved(R2, released_ago=s(90_000)), reserved(R1)],
        10,
        SETTINGS,
        Assign(R1, Source.GROW),
        id="grow-never-used-first",
    ),
    pytest.param(
        [leased(A, "v2", BUSY), leased(B, "v3", BUSY), static(S)],
        [reserved(R1)],
        10,
        replace(SETTINGS, pool_max=3),
        Assign(R1, Source.GROW),
        id="grow-static-numbers-do-not-count-against-pool-max",
    ),
    pytest.param(
        [leased(A, "v2", BUSY), leased(B, "v3", BUSY), static(S)],
        [reserved(R1)],
        10,
        replace(SETTINGS, pool_max=2),
        EXHAUSTED,
        id="no-growth-at-pool-max",
    ),
    pytest.param(
        [leased(A, "v2", BUSY), leased(B, "v3", BUSY)],
        [reserved(R1)],
        10,
        replace(SETTINGS, pool_max=1),
        EXHAUSTED,
        id="no-growth-above-a-lowered-pool-max",
    ),
    pytest.param(
        [leased(A, "v2", BUSY)],
        [reserved(R1)],
        0,
        SETTINGS,
        EXHAUSTED,
        id="no-growth-without-account-capacity",
    ),
    pytest.param(
        [],
        [reserved(R1)],
        1,
        replace(SETTINGS, pool_max=1),
        Assign(R1, Source.GROW),
        id="grow-the-last-allowed-number",
    ),
    pytest.param(
        [released(A, "v2", s(60))],
        [reserved(R1)],
        1,
        SETTINGS,
        Assign(R1, Source.GROW),
        id="grow-before-taking-a-hold",
    ),
    pytest.param(
        [leased(A, "v2", BUSY)],
        [reserved(R1, cooling_for=OTHER_SITE, cooling_left=s(3600)), reserved(R2)],
        10,
        SETTINGS,
        Assign(R2, Source.GROW),
        id="grow-skips-a-number-cooling-for-another-site",
    ),
    pytest.param(
        [leased(A, "v2", BUSY)],
        [reserved(R1, cooling_for=OTHER_SITE, cooling_left=US)],
        10,
        SETTINGS,
        EXHAUSTED,
        id="cooling-for-another-site-to-its-last-microsecond",
    ),
    pytest.param(
        [leased(A, "v2", BUSY)],
        [reserved(R1, cooling_for=OTHER_SITE, cooling_left=s(0))],
        10,
        SETTINGS,
        Assign(R1, Source.GROW),
        id="cool-down-over-any-site-may-take-it",
    ),
    pytest.param(
        [leased(A, "v2", BUSY)],
        [reserved(R1, cooling_for=SITE, cooling_left=s(3600))],
        10,
        SETTINGS,
        Assign(R1, Source.GROW),
        id="the-same-site-takes-its-cooling-number-back",
    ),
    # 4. under pressure, someone else's hold, longest released first
    pytest.param(
        [released(A, "v2", s(100)), released(B, "v3", s(1000)), leased(C, "v4", IDLE * 10)],
        [reserved(R1)],
        0,
        SETTINGS,
        Assign(B, Source.HELD_OTHER),
        id="held-other-longest-released-first-before-preemption",
    ),
    pytest.param(
        [released(A, "v2", s(100))],
        [reserved(R1, cooling_for=OTHER_SITE, cooling_left=s(60))],
        10,
        SETTINGS,
        Assign(A, Source.HELD_OTHER),
        id="held-other-when-the-reserve-has-only-cooling-numbers",
    ),
    pytest.param(
        [released(A, "v2", s(100)), leased(B, "v3", BUSY)],
        [reserved(R1)],
        10,
        replace(SETTINGS, pool_max=2),
        Assign(A, Source.HELD_OTHER),
        id="held-other-at-pool-max",
    ),
    # 5. preemption of the idlest lease, only past preempt_idle_s
    pytest.param(
        [leased(A, "v2", IDLE + s(100)), leased(B, "v3", IDLE + s(300)), leased(C, "v4", BUSY)],
        [],
        0,
        SETTINGS,
        Assign(B, Source.PREEMPT, preempted_lease_id=f"lease-{B}"),
        id="preempt-the-idlest",
    ),
    pytest.param(
        [leased(C, "v2", IDLE + s(300)), leased(B, "v3", IDLE + s(300))],
        [],
        0,
        SETTINGS,
        Assign(B, Source.PREEMPT, preempted_lease_id=f"lease-{B}"),
        id="preempt-ties-by-number",
    ),
    pytest.param(
        [leased(A, "v2", IDLE + US)],
        [],
        0,
        SETTINGS,
        Assign(A, Source.PREEMPT, preempted_lease_id=f"lease-{A}"),
        id="preempt-one-microsecond-past-the-limit",
    ),
    pytest.param(
        [leased(A, "v2", IDLE)], [], 0, SETTINGS, EXHAUSTED, id="no-preemption-at-the-limit"
    ),
    # 6. none, and static numbers are never leased
    pytest.param([], [], 10, SETTINGS, EXHAUSTED, id="empty-pool-and-reserve"),
    pytest.param(
        [static(S), replace(static(A), last_release=LastRelease(ME, SITE, NOW - s(60)))],
        [],
        10,
        SETTINGS,
        EXHAUSTED,
        id="static-numbers-are-never-leased",
    ),
    pytest.param(
        [replace(static(S), lease=ActiveLease("lease-x", ME, NOW))],
        [],
        0,
        SETTINGS,
        EXHAUSTED,
        id="a-static-number-is-never-own-even-if-a-lease-says-so",
    ),
]


@pytest.mark.parametrize(("pool", "reserve", "capacity", "settings", "expected"), ORDER_TABLE)
def test_allocate_follows_the_order_of_preference(
    pool: list[NumberSnapshot],
    reserve: list[NumberSnapshot],
    capacity: int,
    settings: SiteSettings,
    expected: Assign | str,
) -> None:
    decision = decide(pool, reserve, capacity=capacity, settings=settings)
    if expected == EXHAUSTED:
        assert isinstance(decision, Exhausted)
        assert decision.reason
    else:
        assert decision == expected


# --- the small rules -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (static(S), PoolState.STATIC),
        (replace(static(S), lease=ActiveLease("l", ME, NOW)), PoolState.STATIC),
        (leased(A, ME, BUSY), PoolState.LEASED),
        (replace(leased(A, ME, BUSY), last_release=LastRelease("v2", SITE, NOW)), PoolState.LEASED),
        (released(A, ME, s(0)), PoolState.HELD),
        (released(A, ME, HOLD), PoolState.HELD),
        (released(A, ME, HOLD + US), PoolState.FREE),
        (fresh(A), PoolState.FREE),
    ],
)
def test_pool_state(number: NumberSnapshot, expected: PoolState) -> None:
    assert pool_state(number, SETTINGS, NOW) is expected


@pytest.mark.parametrize(
    ("hold_s", "ago", "expected"),
    [
        (1800, s(1800), True),
        (1800, s(1800) + US, False),
        (0, s(0), True),
        (0, US, False),
        (5, s(3), True),
    ],
)
def test_in_hold_includes_its_last_instant(hold_s: int, ago: timedelta, expected: bool) -> None:
    settings = replace(SETTINGS, hold_s=hold_s)
    assert in_hold(released(A, ME, ago), settings, NOW) is expected
    assert in_hold(fresh(A), settings, NOW) is False


@pytest.mark.parametrize(
    ("number", "site", "expected"),
    [
        (reserved(R1, cooling_for=OTHER_SITE, cooling_left=s(60)), SITE, True),
        (reserved(R1, cooling_for=OTHER_SITE, cooling_left=US), SITE, True),
        (reserved(R1, cooling_for=OTHER_SITE, cooling_left=s(0)), SITE, False),
        (reserved(R1, cooling_for=OTHER_SITE, cooling_left=-s(60)), SITE, False),
        (reserved(R1, cooling_for=OTHER_SITE, cooling_left=s(60)), OTHER_SITE, False),
        (reserved(R1), SITE, False),
        (replace(reserved(R1), cooling_until=NOW + s(60)), SITE, False),
    ],
)
def test_is_cooling_for_only_blocks_other_sites(
    number: NumberSnapshot, site: str, expected: bool
) -> None:
    assert is_cooling_for(number, site, NOW) is expected


@pytest.mark.parametrize(
    ("idle_timeout_s", "show_delay_s"), [(1, 0), (3600, 0), (60, 15), (86_400, 3600)]
)
def test_revocation_and_show_times_add_whole_seconds(
    idle_timeout_s: int, show_delay_s: int
) -> None:
    settings = replace(SETTINGS, idle_timeout_s=idle_timeout_s, show_delay_s=show_delay_s)
    assert revocation_due(NOW, settings) == NOW + s(idle_timeout_s)
    assert show_at(NOW, settings) == NOW + s(show_delay_s)


# --- invariants over random snapshots -----------------------------------------------------------

VISITORS = ("v1", "v2", "v3", "v4", "v5", "v6", "v7")
POOL_NUMBERS = tuple(f"+749500000{i:02d}" for i in range(10))
RESERVE_NUMBERS = tuple(f"+749500001{i:02d}" for i in range(6))

offsets = st.integers(min_value=0, max_value=4000).map(s) | st.sampled_from(
    [s(0), US, HOLD, HOLD + US, HOLD - US, IDLE, IDLE + US]
)


@st.composite
def pool_numbers(draw: st.DrawFn, e164: str, pressure: bool) -> NumberSnapshot:
    # Under pressure nothing is fresh and releases are recent, so holds and leases fill the pool.
    kinds = ["released", "leased", "leased", "static"] if pressure else ["fresh", "released"]
    kind = draw(st.sampled_from([*kinds, "leased", "static"]))
    recent = st.integers(min_value=0, max_value=60).map(s)
    if kind == "static":
        return static(e164)
    release = None
    if kind != "fresh" and draw(st.booleans()):
        release = LastRelease(draw(st.sampled_from(VISITORS)), SITE, NOW - draw(offsets))
    lease = None
    if kind == "leased":
        lease = ActiveLease(f"lease-{e164}", draw(st.sampled_from(VISITORS)), NOW - draw(offsets))
    elif kind == "released" and release is None:
        ago = draw(recent if pressure else offsets)
        release = LastRelease(draw(st.sampled_from(VISITORS)), SITE, NOW - ago)
    return NumberSnapshot(e164, SITE, lease=lease, last_release=release)


@st.composite
def reserve_numbers(draw: st.DrawFn, e164: str) -> NumberSnapshot:
    cooling_for = draw(st.sampled_from([None, SITE, OTHER_SITE]))
    cooling_left = draw(st.integers(min_value=-600, max_value=600).map(s) | st.just(s(0)))
    released_ago = draw(st.none() | offsets)
    return reserved(
        e164, cooling_for=cooling_for, cooling_left=cooling_left, released_ago=released_ago
    )


@dataclass(frozen=True, slots=True)
class Scene:
    visitor: str
    pool: list[NumberSnapshot]
    reserve: list[NumberSnapshot]
    settings: SiteSettings
    capacity: int


@st.composite
def scenes(draw: st.DrawFn) -> Scene:
    pool_size = draw(st.integers(min_value=0, max_value=len(POOL_NUMBERS)))
    pressure = draw(st.booleans())
    pool = [draw(pool_numbers(e164, pressure)) for e164 in POOL_NUMBERS[:pool_size]]
    # A visitor holds at most one active lease at a time (all tabs share one).
    seen: set[str] = set()
    for i, number in enumerate(pool):
        if number.lease is not None:
            if number.lease.visitor_id in seen:
                pool[i] = replace(number, lease=None)
            seen.add(number.lease.visitor_id)
    pool = draw(st.permutations(pool))
    reserve_size = draw(st.integers(min_value=0, max_value=len(RESERVE_NUMBERS)))
    reserve = [draw(reserve_numbers(e164)) for e164 in RESERVE_NUMBERS[:reserve_size]]
    settings = replace(
        SETTINGS,
        hold_s=draw(st.sampled_from([0, 1, 60, 1800, 3600])),
        preempt_idle_s=draw(st.sampled_from([0, 1, 600, 3600])),
        pool_max=draw(st.integers(min_value=0, max_value=12)),
    )
    return Scene(
        visitor=draw(st.sampled_from(VISITORS)),
        pool=pool,
        reserve=draw(st.permutations(reserve)),
        settings=settings,
        capacity=draw(st.integers(min_value=0, max_value=3)),
    )


def run(scene: Scene) -> Decision:
    return decide(
        scene.pool,
        scene.reserve,
        capacity=scene.capacity,
        settings=scene.settings,
        visitor=scene.visitor,
    )


def holds(number: NumberSnapshot, visitor: str, settings: SiteSettings) -> bool:
    """The number is in `visitor`'s hold: not leased, released by them at most hold_s ago."""
    release = number.last_release
    return (
        not number.static
        and number.lease is None
        and release is not None
        and release.visitor_id == visitor
        and NOW - release.ended_at <= timedelta(seconds=settings.hold_s)
    )


def is_free(number: NumberSnapshot, settings: SiteSettings) -> bool:
    release = number.last_release
    return (
        not number.static
        and number.lease is None
        and (release is None or NOW - release.ended_at > timedelta(seconds=settings.hold_s))
    )


def cools_for_another_site(number: NumberSnapshot) -> bool:
    return (
        number.cooling_site_id not in (None, SITE)
        and number.cooling_until is not None
        and number.cooling_until > NOW
    )


def lru_key(number: NumberSnapshot) -> tuple[bool, datetime, str]:
    release = number.last_release
    return (release is not None, release.ended_at if release else NOW, number.e164)


@given(scenes())
def test_never_another_visitors_number_unless_preempting_its_lease(scene: Scene) -> None:
    decision = run(scene)
    if isinstance(decision, Exhausted):
        return
    by_number = {n.e164: n for n in [*scene.pool, *scene.reserve]}
    assert decision.e164 in by_number
    chosen = by_number[decision.e164]
    assert not chosen.static
    lease = chosen.lease
    if lease is not None and lease.visitor_id != scene.visitor:
        assert decision.source is Source.PREEMPT
        assert decision.preempted_lease_id == lease.lease_id
    if decision.source is Source.PREEMPT:
        assert lease is not None and lease.visitor_id != scene.visitor
        assert decision.preempted_lease_id == lease.lease_id
        assert NOW - lease.last_activity_at > timedelta(seconds=scene.settings.preempt_idle_s)
    else:
        assert decision.preempted_lease_id is None
    if decision.source is Source.OWN:
        assert lease is not None and lease.visitor_id == scene.visitor


@given(scenes())
def test_a_number_cooling_for_another_site_never_crosses_sites(scene: Scene) -> None:
    decision = run(scene)
    reserve = {n.e164: n for n in scene.reserve}
    if isinstance(decision, Assign) and decision.e164 in reserve:
        assert decision.source is Source.GROW
        assert not cools_for_another_site(reserve[decision.e164])
    if isinstance(decision, Assign) and decision.source is Source.GROW:
        assert decision.e164 in reserve


@given(scenes())
def test_a_visitor_in_its_hold_gets_its_number_back(scene: Scene) -> None:
    own_lease = [
        n for n in scene.pool if not n.static and n.lease and n.lease.visitor_id == scene.visitor
    ]
    in_hold_numbers = {n.e164 for n in scene.pool if holds(n, scene.visitor, scene.settings)}
    decision = run(scene)
    if own_lease:
        assert decision == Assign(own_lease[0].e164, Source.OWN)
    elif in_hold_numbers:
        assert isinstance(decision, Assign)
        assert decision.source is Source.HOLD
        assert decision.e164 in in_hold_numbers
    else:
        assert not (isinstance(decision, Assign) and decision.source in (Source.OWN, Source.HOLD))


@given(scenes())
def test_free_means_least_recently_released(scene: Scene) -> None:
    decision = run(scene)
    free = [n for n in scene.pool if is_free(n, scene.settings)]
    if isinstance(decision, Assign) and decision.source is Source.FREE:
        chosen = next(n for n in scene.pool if n.e164 == decision.e164)
        assert is_free(chosen, scene.settings)
        assert all(lru_key(chosen) <= lru_key(n) for n in free)
    if isinstance(decision, Assign) and decision.source is Source.GROW:
        chosen = next(n for n in scene.reserve if n.e164 == decision.e164)
        eligible = [n for n in scene.reserve if not cools_for_another_site(n)]
        assert all(lru_key(chosen) <= lru_key(n) for n in eligible)


@given(scenes())
def test_growth_respects_pool_max_and_capacity(scene: Scene) -> None:
    decision = run(scene)
    pool_count = sum(1 for n in scene.pool if not n.static)
    if isinstance(decision, Assign) and decision.source is Source.GROW:
        assert pool_count < scene.settings.pool_max
        assert scene.capacity > 0


@given(scenes())
def test_the_first_applicable_rule_decides(scene: Scene) -> None:
    """Each rule applies exactly when the earlier ones do not: the order, as a property."""
    settings, visitor = scene.settings, scene.visitor
    leasable = [n for n in scene.pool if not n.static]
    rules: list[tuple[Source | None, bool]] = [
        (Source.OWN, any(n.lease and n.lease.visitor_id == visitor for n in leasable)),
        (Source.HOLD, any(holds(n, visitor, settings) for n in leasable)),
        (Source.FREE, any(is_free(n, settings) for n in leasable)),
        (
            Source.GROW,
            len(leasable) < settings.pool_max
            and scene.capacity > 0
            and any(not cools_for_another_site(n) for n in scene.reserve),
        ),
        (Source.HELD_OTHER, any(n.lease is None for n in leasable)),
        (
            Source.PREEMPT,
            any(
                n.lease
                and NOW - n.lease.last_activity_at > timedelta(seconds=settings.preempt_idle_s)
                for n in leasable
            ),
        ),
        (None, True),
    ]
    expected = next(source for source, applies in rules if applies)
    decision = run(scene)
    if expected is None:
        assert isinstance(decision, Exhausted)
    else:
        assert isinstance(decision, Assign) and decision.source is expected


# --- a simulated site: apply each decision as the store would -----------------------------------

Step = tuple[str, str, int]  # (action, visitor, seconds to wait before it)

steps = st.tuples(
    st.sampled_from(["visit", "visit", "active", "leave"]),
    st.sampled_from(VISITORS),
    st.sampled_from([0, 0, 1, 30, 600, 1800, 1801, 4000]),
)


class Site:
    """The pool as the store keeps it, with the allocation decisions applied."""

    def __init__(
        self, settings: SiteSettings, capacity: int, reserve: list[NumberSnapshot]
    ) -> None:
        self.settings = settings
        self.capacity = capacity
        self.pool: dict[str, NumberSnapshot] = {}
        self.reserve = {n.e164: n for n in reserve}
        self.now = NOW
        self.leases = 0

    def holder(self, visitor: str) -> NumberSnapshot | None:
        return next(
            (n for n in self.pool.values() if n.lease and n.lease.visitor_id == visitor), None
        )

    def visit(self, visitor: str) -> Decision:
        decision = allocate(
            site_id=SITE,
            visitor_id=visitor,
            pool=list(self.pool.values()),
            reserve=list(self.reserve.values()),
            settings=self.settings,
            account_capacity=self.capacity,
            now=self.now,
        )
        if isinstance(decision, Exhausted) or decision.source is Source.OWN:
            return decision
        if decision.source is Source.GROW:
            number = replace(self.reserve.pop(decision.e164), site_id=SITE)
            self.capacity -= 1
        else:
            number = self.pool[decision.e164]
        if number.lease is not None:  # preempted: that lease ends now
            number = replace(
                number, last_release=LastRelease(number.lease.visitor_id, SITE, self.now)
            )
        self.leases += 1
        lease = ActiveLease(f"lease-{self.leases}", visitor, self.now)
        self.pool[number.e164] = replace(number, lease=lease)
        return decision

    def touch(self, visitor: str) -> None:
        number = self.holder(visitor)
        if number is not None and number.lease is not None:
            self.pool[number.e164] = replace(
                number, lease=replace(number.lease, last_activity_at=self.now)
            )

    def leave(self, visitor: str) -> None:
        number = self.holder(visitor)
        if number is not None:
            release = LastRelease(visitor, SITE, self.now)
            self.pool[number.e164] = replace(number, lease=None, last_release=release)


@given(
    steps=st.lists(steps, max_size=40),
    pool_max=st.integers(min_value=0, max_value=4),
    capacity=st.integers(min_value=0, max_value=4),
    hold_s=st.sampled_from([0, 60, 1800]),
    preempt_idle_s=st.sampled_from([0, 600]),
)
def test_a_simulated_site_never_gives_one_number_to_two_visitors(
    steps: list[Step], pool_max: int, capacity: int, hold_s: int, preempt_idle_s: int
) -> None:
    settings = replace(SETTINGS, pool_max=pool_max, hold_s=hold_s, preempt_idle_s=preempt_idle_s)
    reserve = [
        reserved(R1, cooling_for=OTHER_SITE, cooling_left=s(3000)),
        reserved(R2),
        reserved("+74950000103", cooling_for=SITE, cooling_left=s(3000)),
        reserved("+74950000104", released_ago=s(100)),
    ]
    site = Site(settings, capacity, reserve)
    holders: dict[str, str] = {}  # visitor -> number, kept from the decisions alone
    for action, visitor, wait in steps:
        site.now += s(wait)
        if action == "visit":
            hold_numbers = {
                n.e164 for n in site.pool.values() if holds_at(n, visitor, settings, site.now)
            }
            decision = site.visit(visitor)
            if visitor in holders:
                assert decision == Assign(holders[visitor], Source.OWN)
            elif hold_numbers:
                assert isinstance(decision, Assign) and decision.source is Source.HOLD
                assert decision.e164 in hold_numbers
            if isinstance(decision, Assign):
                if decision.source is Source.PREEMPT:
                    victims = [v for v, e164 in holders.items() if e164 == decision.e164]
                    assert len(victims) == 1 and victims[0] != visitor
                    del holders[victims[0]]
                else:
                    assert decision.e164 not in holders.values() or (
                        holders.get(visitor) == decision.e164
                    )
                assert decision.e164 != R1 or site.now >= NOW + s(3000)
                holders[visitor] = decision.e164
        elif action == "active":
            site.touch(visitor)
        else:
            site.leave(visitor)
            holders.pop(visitor, None)
        # No two visitors hold one number, and the store's view matches the decisions.
        assert len(set(holders.values())) == len(holders)
        leased_now = {n.lease.visitor_id: e164 for e164, n in site.pool.items() if n.lease}
        assert leased_now == holders
        assert len(site.pool) <= pool_max


def holds_at(number: NumberSnapshot, visitor: str, settings: SiteSettings, now: datetime) -> bool:
    release = number.last_release
    return (
        number.lease is None
        and release is not None
        and release.visitor_id == visitor
        and now - release.ended_at <= timedelta(seconds=settings.hold_s)
    )

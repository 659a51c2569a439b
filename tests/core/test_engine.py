"""The site engine (core.engine): the visitor lifecycle as a pure state machine.

Scenarios prove each rule of the lifecycle with the clock as a parameter; hypothesis drives
random event sequences and checks the invariants that every guarantee rests on (no number
leased twice, one lease per visitor, the per-address cap, the pool's limit, tabs show what the
lease says), and that the indexed allocation chooses exactly as `core.leases.allocate`, the
readable specification of the order.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calltracking.core import leases as spec
from calltracking.core.engine import Policy, SiteEngine, SiteRules
from calltracking.core.engine import events as ev
from calltracking.core.engine.abuse import address_key
from calltracking.core.engine.allocation import choose, has_room, spare_numbers
from calltracking.core.engine.pool import Number
from calltracking.core.kinds import AttributionKind, DisplayKind, LeaseEndReason
from calltracking.core.settings import SiteSettings

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
INITIAL, EXPIRED, UNTRACKED = "+74950000001", "+74950000002", "+74950000003"
POOL = ["+74951110001", "+74951110002", "+74951110003"]
DEFAULTS = {
    AttributionKind.INITIAL: INITIAL,
    AttributionKind.EXPIRED: EXPIRED,
    AttributionKind.UNTRACKED: UNTRACKED,
}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def engine(pool: list[str] = POOL, policy: Policy | None = None, **changes: object) -> SiteEngine:
    base = SiteSettings(show_delay_s=0, idle_timeout_s=600, hold_s=300, pool_max=len(pool))
    rules = SiteRules("site-1", replace(base, **changes), DEFAULTS, ("shop.example",))  # type: ignore[arg-type]
    counter = itertools.count(1)
    site = SiteEngine(rules, ids=lambda: f"id{next(counter)}", policy=policy)
    for e164 in pool:
        site.pool.add(Number(e164))
    return site


def open_tab(
    site: SiteEngine,
    t: float,
    visitor: str | None = None,
    tab: str = "t",
    address: str = "198.51.100.1",
    url: str = "https://shop.example/",
) -> str:
    effects = site.handle(ev.TabOpened(visitor, tab, address, url=url), at(t))
    (welcome,) = [e for e in effects if isinstance(e, ev.Welcomed)]
    return welcome.visitor_id


def shown(site: SiteEngine, visitor: str) -> tuple[DisplayKind, str] | None:
    return site.shown(visitor)


# -- the lifecycle ------------------------------------------------------------------------------


def test_a_visitor_sees_initial_during_the_delay_and_its_number_when_the_delay_is_over() -> None:
    site = engine(show_delay_s=50)
    v = open_tab(site, 0)
    assert shown(site, v) == (DisplayKind.INITIAL, INITIAL)
    assert site.next_due() == at(50)
    assert site.tick(at(49.9)) == []
    effects = site.tick(at(50))
    assert [type(e) for e in effects] == [ev.LeaseStarted, ev.Show]
    assert shown(site, v) == (DisplayKind.DYNAMIC, POOL[0])


def test_tabs_of_one_visitor_share_one_lease() -> None:
    site = engine()
    v = open_tab(site, 0, tab="a")
    assert open_tab(site, 1, visitor=v, tab="b") == v
    assert len(site.pool.leases) == 1
    effects = site.handle(ev.TabClosed(v, "a"), at(2))
    assert effects == []  # the other tab still holds the number
    assert shown(site, v) == (DisplayKind.DYNAMIC, POOL[0])


def test_the_last_tab_closing_starts_the_hold_and_the_visitor_gets_its_number_back() -> None:
    site = engine(show_delay_s=50)
    v = open_tab(site, 0)
    site.tick(at(50))
    (ended,) = site.handle(ev.TabClosed(v, "t"), at(60))
    assert isinstance(ended, ev.LeaseEnded) and ended.reason is LeaseEndReason.CLOSED
    open_tab(site, 300, visitor=v, tab="again")  # within hold_s, no new delay
    assert shown(site, v) == (DisplayKind.DYNAMIC, POOL[0])


def test_a_hold_keeps_the_number_from_others_while_another_can_be_had() -> None:
    site = engine()
    v = open_tab(site, 0)
    site.handle(ev.TabClosed(v, "t"), at(10))
    w = open_tab(site, 20, address="203.0.113.9")
    assert shown(site, w) == (DisplayKind.DYNAMIC, POOL[1])


def test_an_idle_lease_is_revoked_and_activity_brings_the_same_number_back() -> None:
    site = engine(idle_timeout_s=600)
    v = open_tab(site, 0)
    site.handle(ev.Activity(v, "t"), at(100))
    assert site.next_due() == at(700)
    effects = site.tick(at(700))
    assert any(isinstance(e, ev.LeaseEnded) and e.reason is LeaseEndReason.REVOKED for e in effects)
    assert shown(site, v) == (DisplayKind.EXPIRED, EXPIRED)
    site.handle(ev.Activity(v, "t"), at(720))
    assert shown(site, v) == (DisplayKind.DYNAMIC, POOL[0])


def test_activity_in_a_hidden_tab_does_not_keep_the_lease() -> None:
    site = engine(idle_timeout_s=600)
    v = open_tab(site, 0)
    site.handle(ev.Visibility(v, "t", False), at(1))
    site.handle(ev.Activity(v, "t"), at(500))
    site.tick(at(600))
    assert shown(site, v) == (DisplayKind.EXPIRED, EXPIRED)


def test_an_exhausted_pool_shows_untracked_and_serves_waiters_longest_first() -> None:
    site = engine(pool=POOL[:1], hold_s=0)
    a = open_tab(site, 0, address="192.0.2.1")
    b = open_tab(site, 1, address="192.0.2.2")
    c = open_tab(site, 2, address="192.0.2.3")
    assert shown(site, b) == shown(site, c) == (DisplayKind.UNTRACKED, UNTRACKED)
    effects = site.handle(ev.TabClosed(a, "t"), at(3))
    assert shown(site, b) == (DisplayKind.DYNAMIC, POOL[0])
    assert shown(site, c) == (DisplayKind.UNTRACKED, UNTRACKED)
    assert [e.visitor_id for e in effects if isinstance(e, ev.LeaseStarted)] == [b]


def test_exhaustion_names_the_address_that_holds_most_leases() -> None:
    site = engine(pool=POOL[:2], max_leases_per_address=2, preempt_idle_s=10_000)
    open_tab(site, 0, address="192.0.2.66")
    open_tab(site, 1, address="192.0.2.66", tab="u")
    effects = site.handle(ev.TabOpened(None, "x", "192.0.2.66"), at(2))
    assert any(isinstance(e, ev.Refused) and e.rule == "address_cap" for e in effects)


def test_traffic_outside_the_channels_and_robots_see_untracked() -> None:
    site = engine(channels=("cpc",))
    v = open_tab(site, 0, url="https://shop.example/")
    assert shown(site, v) == (DisplayKind.UNTRACKED, UNTRACKED)
    paid = open_tab(site, 1, url="https://shop.example/?gclid=x", address="192.0.2.9")
    assert shown(site, paid) == (DisplayKind.DYNAMIC, POOL[0])
    effects = site.handle(
        ev.TabOpened(None, "b", "192.0.2.10", url="https://shop.example/?gclid=y", bot=True), at(2)
    )
    assert [e.kind for e in effects if isinstance(e, ev.Show)] == [DisplayKind.UNTRACKED]


@pytest.mark.parametrize("lease_on", ["visible", "interaction"])
def test_lease_on_visible_or_interaction_waits_for_want(lease_on: str) -> None:
    site = engine(lease_on=lease_on)
    v = open_tab(site, 0)
    assert shown(site, v) == (DisplayKind.INITIAL, INITIAL)
    site.handle(ev.Want(v), at(5))
    assert shown(site, v) == (DisplayKind.DYNAMIC, POOL[0])


# -- abuse --------------------------------------------------------------------------------------


def test_one_address_holds_at_most_a_quarter_of_pool_max_by_default() -> None:
    site = engine(pool=[f"+7495222000{i}" for i in range(8)])  # pool_max 8 -> cap 2
    visitors = [open_tab(site, i, address="192.0.2.50") for i in range(4)]
    kinds = [shown(site, v)[0] for v in visitors]  # type: ignore[index]
    assert kinds.count(DisplayKind.DYNAMIC) == 2
    other = open_tab(site, 9, address="192.0.2.51")
    assert shown(site, other)[0] is DisplayKind.DYNAMIC  # type: ignore[index]


def test_ipv6_addresses_count_by_their_64_prefix() -> None:
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9")
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key("not an address") == "not an address"


def test_a_flood_of_new_visitors_from_one_address_is_refused_after_a_burst() -> None:
    site = engine(pool=[f"+749533300{i:02d}" for i in range(60)], max_leases_per_address=100)
    refused = 0
    for i in range(100):
        effects = site.handle(ev.TabOpened(None, f"t{i}", "192.0.2.77"), at(i * 0.05))
        refused += any(isinstance(e, ev.Refused) and e.rule == "hello_rate" for e in effects)
    assert 30 <= refused <= 40  # a burst of 60 (and 2/s after it) passed, the rest did not
    assert len(site.visitors) < 70
    other = open_tab(site, 6, address="192.0.2.78")  # other addresses are not affected
    assert shown(site, other)[0] is DisplayKind.DYNAMIC  # type: ignore[index]


def test_busy_tabs_from_one_address_cannot_hold_the_pool_under_pressure() -> None:
    site = engine(pool=POOL[:2], max_leases_per_address=2, preempt_idle_s=600)
    bots = [open_tab(site, 0, address="192.0.2.66", tab=f"b{i}") for i in range(2)]
    for second in range(0, 100, 2):
        for bot in bots:
            site.handle(ev.Activity(bot, "t"), at(second))
    person = open_tab(site, 100, address="198.51.100.20")
    assert shown(site, person)[0] is DisplayKind.DYNAMIC  # type: ignore[index]
    assert sorted(shown(site, b)[0] for b in bots) == [DisplayKind.DYNAMIC, DisplayKind.EXPIRED]  # type: ignore[index]


def test_a_lease_idle_past_preempt_idle_s_is_taken_back_under_pressure() -> None:
    site = engine(pool=POOL[:1], preempt_idle_s=60, idle_timeout_s=3600)
    idle = open_tab(site, 0, address="192.0.2.1")
    fresh = open_tab(site, 61, address="192.0.2.2")
    assert shown(site, fresh) == (DisplayKind.DYNAMIC, POOL[0])
    assert shown(site, idle) == (DisplayKind.EXPIRED, EXPIRED)


def test_the_seed_policy_revokes_an_hour_after_assignment_whatever_the_activity() -> None:
    site = engine(policy=Policy.seed(), idle_timeout_s=3600, hold_s=900)
    v = open_tab(site, 0)
    for second in range(60, 3600, 60):
        site.handle(ev.Activity(v, "t"), at(second))
    site.tick(at(3600))
    assert shown(site, v) == (DisplayKind.EXPIRED, EXPIRED)


# -- attribution facts --------------------------------------------------------------------------


def test_number_facts_follow_the_lease_and_its_release() -> None:
    site = engine()
    v = open_tab(site, 0)
    facts = site.number_facts(POOL[0])
    assert facts.last_lease is not None and facts.last_lease.visitor_id == v
    assert facts.last_lease.ended_at is None
    site.handle(ev.TabClosed(v, "t"), at(10))
    facts = site.number_facts(POOL[0])
    assert facts.last_lease is not None and facts.last_lease.ended_at == at(10)
    assert site.number_facts(INITIAL).default_kinds == (AttributionKind.INITIAL,)
    assert site.number_facts("+79990000000").site_id is None


# -- invariants under random traffic ------------------------------------------------------------

ADDRESSES = [f"192.0.2.{i}" for i in range(1, 7)]
step = st.tuples(
    st.sampled_from(["open", "close", "activity", "hide", "want", "tick"]),
    st.integers(0, 11),  # visitor slot
    st.integers(0, 5),  # address
    st.floats(0, 400, allow_nan=False),  # seconds since the previous step
)


def _check_invariants(site: SiteEngine) -> None:
    leased = [n.lease for n in site.pool.numbers.values() if n.lease is not None]
    assert len({le.visitor_id for le in leased}) == len(leased)  # one lease per visitor
    assert {le.visitor_id for le in leased} == set(site.pool.leases)
    assert site.pool.leasable_count <= site.settings.pool_max
    cap = site.settings.lease_cap_per_address
    assert all(count <= cap for count in site.pool.per_address.values())
    for visitor in site.visitors.values():
        lease = site.pool.leases.get(visitor.visitor_id)
        if visitor.tabs and visitor.shown is not None and visitor.shown[0] is DisplayKind.DYNAMIC:
            assert lease is not None and lease.e164 == visitor.shown[1]
        if lease is not None:
            assert visitor.tabs  # a lease without an open tab would never end


def _snapshots(site: SiteEngine) -> list[spec.NumberSnapshot]:
    snaps = []
    for n in site.pool.numbers.values():
        lease = n.lease
        release = (
            spec.LastRelease(n.last_visitor_id, "site-1", n.released_at)
            if n.released_at is not None and n.last_visitor_id is not None
            else None
        )
        snaps.append(
            spec.NumberSnapshot(
                n.e164,
                "site-1",
                static=n.static,
                lease=spec.ActiveLease(lease.lease_id, lease.visitor_id, lease.last_activity_at)
                if lease
                else None,
                last_release=release,
            )
        )
    return snaps


def _agrees_with_the_specification(site: SiteEngine, now: datetime) -> None:
    """A newcomer from an address holding nothing: both orders must pick the same number."""
    newcomer = replace(
        next(iter(site.visitors.values())), visitor_id="newcomer", address="x", held=None
    )
    got = choose(site, newcomer, now)
    want = spec.allocate(
        site_id="site-1",
        visitor_id="newcomer",
        pool=_snapshots(site),
        reserve=[],
        settings=site.settings,
        account_capacity=0,
        now=now,
    )
    if isinstance(want, spec.Exhausted):
        # Past the specification's order only the fair-share rule may still find a number.
        assert got is None or (got[1] is not None and site.pool.per_address[got[1].address] > 1)
    elif want.source is spec.Source.PREEMPT:
        # Leases idle equally long may be taken in either order; the idle time must agree.
        assert got is not None and got[1] is not None
        chosen = site.pool.numbers[want.e164].lease
        assert chosen is not None and got[1].last_activity_at == chosen.last_activity_at
    else:
        assert got is not None and got[0] == want.e164


@settings(max_examples=150, deadline=None)
@given(st.lists(step, max_size=80), st.integers(0, 60), st.sampled_from(["load", "visible"]))
def test_random_traffic_keeps_every_invariant(
    steps: list[tuple[str, int, int, float]], delay: int, lease_on: str
) -> None:
    site = engine(
        pool=POOL,
        show_delay_s=delay,
        lease_on=lease_on,
        preempt_idle_s=120,
        max_leases_per_address=2,
    )
    ids: dict[int, str] = {}
    tabs: dict[int, list[str]] = {}
    now = T0
    for n, (action, slot, address, dt) in enumerate(steps):
        now += timedelta(seconds=dt)
        site.tick(now)
        visitor = ids.get(slot)
        if action == "open" or visitor is None:
            tab = f"tab{n}"
            ids[slot] = open_tab(site, (now - T0).total_seconds(), visitor, tab, ADDRESSES[address])
            tabs.setdefault(slot, []).append(tab)
        elif action == "close" and tabs.get(slot):
            site.handle(ev.TabClosed(visitor, tabs[slot].pop()), now)
        elif action == "activity" and tabs.get(slot):
            site.handle(ev.Activity(visitor, tabs[slot][-1]), now)
        elif action == "hide" and tabs.get(slot):
            site.handle(ev.Visibility(visitor, tabs[slot][-1], False), now)
        elif action == "want":
            site.handle(ev.Want(visitor), now)
        _check_invariants(site)
        if site.visitors:
            _agrees_with_the_specification(site, now)


def test_visitors_with_nothing_left_to_continue_leave_memory() -> None:
    site = engine(hold_s=300)
    gone = open_tab(site, 0, tab="a", address="192.0.2.1")
    held = open_tab(site, 0, tab="b", address="192.0.2.2")
    site.handle(ev.TabClosed(gone, "a"), at(10))
    site.handle(ev.TabClosed(held, "b"), at(1700))
    assert site.forget_idle(at(1810)) == 1  # 30 minutes after its visit; its hold is over
    assert gone not in site.visitors and held in site.visitors  # still in its hold
    assert site.forget_idle(at(1700 + 1801)) == 1
    assert site.visitors == {}


def test_room_for_a_new_visitor_is_a_free_number_or_a_reserve_to_grow_from() -> None:
    """`has_room` says what `choose` would do for a new visitor without taking a number back
    (a split site's node sends new visitors where it holds)."""
    site = engine(pool=["+74951110001"], pool_max=2, hold_s=300)
    assert has_room(site, at(0))
    first = open_tab(site, 0, address="198.51.100.1")
    assert not has_room(site, at(1))  # leased, and nothing to grow from
    site.offer_reserve(["+74951110009"], capacity=1)
    assert has_room(site, at(1))
    open_tab(site, 1, address="198.51.100.2")
    assert not has_room(site, at(2))  # grown to pool_max
    site.handle(ev.TabClosed(first, "t"), at(3))
    assert not has_room(site, at(4))  # its number is in its hold
    assert has_room(site, at(3 + 301))


def test_spare_numbers_count_the_unleased_and_the_growth_the_reserve_allows() -> None:
    site = engine(pool=["+74951110001", "+74951110002"], pool_max=4)
    assert spare_numbers(site) == 2
    open_tab(site, 0, address="198.51.100.1")
    assert spare_numbers(site) == 1
    site.offer_reserve(["+74951110008", "+74951110009", "+74951110010"], capacity=5)
    assert spare_numbers(site) == 3  # growth up to pool_max only
    site.offer_reserve(["+74951110008"], capacity=5)
    assert spare_numbers(site) == 2  # and only from what the reserve offered

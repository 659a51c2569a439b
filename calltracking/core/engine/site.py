"""One site's visitor lifecycle as a state machine of explicit time: `handle(event, now)` and
`tick(now)` return effects; nothing here reads a clock or does I/O. The websocket path and the
simulator drive this same class, each at its own clock.

What a visitor is shown (`_decide`, in this order):
    robot, or traffic outside `channels`        -> untracked
    an active lease                             -> dynamic (their number, in every tab)
    revoked for idleness, no activity since     -> expired
    their number still in its hold, the address
    under its lease cap                         -> dynamic again at once (no new delay)
    before `show_delay_s` since the visit start -> initial
    `lease_on` visible/interaction, no `want`   -> initial
    the address holds its cap of leases         -> untracked (refused, not waiting)
    otherwise allocate                          -> dynamic, or untracked while the pool is
                                                   exhausted (waiting, served longest-first)

Due times: a visit's start + `show_delay_s` (a heap), and the idlest lease's last activity +
`idle_timeout_s` (the front of the pool's activity order). The last tab closing ends the lease
and starts the hold. A number freed in any way goes to the longest waiter first.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from calltracking.core import visits as visit_rules
from calltracking.core.attribution import LeaseFacts, NumberFacts
from calltracking.core.channels import is_tracked
from calltracking.core.engine import events as ev
from calltracking.core.engine.abuse import HelloRate, address_key
from calltracking.core.engine.allocation import Policy, choose
from calltracking.core.engine.pool import Lease, Number, Pool
from calltracking.core.kinds import AttributionKind, DisplayKind, LeaseEndReason
from calltracking.core.settings import SiteSettings
from calltracking.core.traffic import TrafficSource, classify

_WANT_FIRST = ("visible", "interaction")
DEFAULT_ORDER = (AttributionKind.INITIAL, AttributionKind.EXPIRED, AttributionKind.UNTRACKED)


@dataclass(frozen=True, slots=True)
class SiteRules:
    site_id: str
    settings: SiteSettings
    defaults: Mapping[AttributionKind, str]
    domains: tuple[str, ...] = ()


@dataclass(slots=True)
class Visitor:
    visitor_id: str
    address: str
    bot: bool = False
    tabs: dict[str, bool] = field(default_factory=dict)  # tab -> visible
    visit_id: str | None = None
    visit_started_at: datetime | None = None
    visit_source: TrafficSource | None = None
    visit_tracked: bool = False
    last_seen_at: datetime | None = None
    last_activity_at: datetime | None = None
    revoked_at: datetime | None = None
    waiting_since: datetime | None = None
    wants: bool = False
    held: str | None = None  # the number whose hold is this visitor's
    shown: tuple[DisplayKind, str] | None = None


class SiteEngine:
    def __init__(
        self,
        rules: SiteRules,
        *,
        ids: Callable[[], str],
        record_ids: Callable[[], str] | None = None,
        policy: Policy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.rules = rules
        self.ids = ids  # visitors' (the contract wants them random)
        # Visits' and leases' (the store's are time-ordered, store/ids.py); `ids` if not given.
        self.record_ids = record_ids or ids
        self.policy = policy or Policy()
        self.rng = rng or random.Random(0)
        self.pool = Pool()
        self.visitors: dict[str, Visitor] = {}
        self.reserve: list[str] = []  # candidates the store offered, best first
        self.capacity = 0  # numbers the account may still take into its pools
        self.hello_rate = HelloRate()
        self._waiting: dict[str, datetime] = {}
        self._show_due: list[tuple[datetime, int, str]] = []
        self._seq = 0

    @property
    def settings(self) -> SiteSettings:
        return self.rules.settings

    def update_rules(self, rules: SiteRules) -> None:
        self.rules = rules

    def restore(self, visitor: Visitor, now: datetime) -> None:
        """Take back a visitor as the store kept it (after a restart, or from another node):
        its due display delay and its place among waiters resume."""
        self.visitors[visitor.visitor_id] = visitor
        if visitor.waiting_since is not None and visitor.tabs:
            last = next(reversed(self._waiting.values()), None)
            self._waiting[visitor.visitor_id] = visitor.waiting_since
            if last is not None and visitor.waiting_since < last:  # keep longest-waiting first
                self._waiting = dict(sorted(self._waiting.items(), key=lambda item: item[1]))
        if visitor.shown is not None and visitor.shown[0] is DisplayKind.INITIAL:
            assert visitor.visit_started_at is not None
            delay = timedelta(seconds=self.settings.show_delay_s)
            self._schedule_show(visitor, max(now, visitor.visit_started_at + delay))

    def forget(self, visitor_id: str) -> None:
        """Drop a visitor that the store is about to give back as another node left it."""
        self.visitors.pop(visitor_id, None)
        self._waiting.pop(visitor_id, None)

    def forget_idle(self, now: datetime) -> int:
        """Drop visitors with no tab, no lease and no visit left to continue (bounded memory;
        the store still has them, and a returning one is restored from it)."""
        idle = [
            v.visitor_id
            for v in self.visitors.values()
            if not v.tabs
            and v.visitor_id not in self.pool.leases
            and (v.last_seen_at is None or visit_rules.visit_is_over(v.last_seen_at, now, 0))
            and self._own_hold(v, now) is None
        ]
        for visitor_id in idle:
            del self.visitors[visitor_id]
        return len(idle)

    def offer_reserve(self, numbers: list[str], capacity: int) -> None:
        self.reserve = list(numbers)
        self.capacity = capacity

    # -- inputs -------------------------------------------------------------------------------

    def handle(self, event: ev.Input, now: datetime) -> list[ev.Effect]:
        out: list[ev.Effect] = []
        if isinstance(event, ev.TabOpened):
            self._opened(event, now, out)
        else:
            visitor = self.visitors.get(event.visitor_id)
            if visitor is None:
                return out  # a refused or forgotten visitor: nothing to change
            if isinstance(event, ev.TabClosed):
                self._closed(visitor, event.tab_id, now, out)
            elif isinstance(event, ev.Activity):
                self._activity(visitor, event.tab_id, now, out)
            elif isinstance(event, ev.Visibility):
                if event.tab_id in visitor.tabs:
                    visitor.tabs[event.tab_id] = event.visible
            elif isinstance(event, ev.Want):
                visitor.wants = True
                self._decide(visitor, now, out)  # nothing without an open tab to end a lease
        return out

    def _opened(self, event: ev.TabOpened, now: datetime, out: list[ev.Effect]) -> None:
        address = address_key(event.address)
        visitor = self.visitors.get(event.visitor_id or "")
        if visitor is None:
            if address and not self.hello_rate.allow(address, now):
                # No rows for a flood: the tab is answered `untracked` and forgotten.
                out.append(ev.Refused(None, address, "hello_rate", now))
                out.append(ev.Welcomed(self.ids(), "", event.tab_id))
                out.append(ev.Show("", DisplayKind.UNTRACKED, self._default("untracked"), now))
                return
            visitor = Visitor(self.ids(), address, bot=event.bot)
            self.visitors[visitor.visitor_id] = visitor
            out.append(ev.VisitorCreated(visitor.visitor_id, address, event.bot, now))
        visitor.bot = event.bot
        visitor.address = address
        self._visit(visitor, event, now, out)
        visitor.tabs[event.tab_id] = True
        visitor.last_activity_at = now
        if visitor.visitor_id in self.pool.leases:
            self._touch(self.pool.leases[visitor.visitor_id], now)
        assert visitor.visit_id is not None
        out.append(ev.Welcomed(visitor.visitor_id, visitor.visit_id, event.tab_id))
        self._decide(visitor, now, out)  # the new tab is sent `shown(visitor)` by its adapter
        assert visitor.visit_started_at is not None
        shows_at = visitor.visit_started_at + timedelta(seconds=self.settings.show_delay_s)
        if shows_at > now and _waits_for_delay(visitor):
            self._schedule_show(visitor, shows_at)

    def _visit(
        self, visitor: Visitor, event: ev.TabOpened, now: datetime, out: list[ev.Effect]
    ) -> None:
        incoming = classify(event.url, event.referrer, self.rules.domains)
        if visitor.visit_id is not None and visitor.last_seen_at is not None:
            over = visit_rules.visit_is_over(visitor.last_seen_at, now, len(visitor.tabs))
            if not over and not visit_rules.starts_new_visit(visitor.visit_source, incoming):
                visitor.last_seen_at = now
                return
        visitor.visit_id = self.record_ids()
        visitor.visit_started_at = now
        visitor.visit_source = incoming
        visitor.visit_tracked = is_tracked(self.settings.channels, incoming)
        visitor.last_seen_at = now
        visitor.revoked_at = None  # a new visit restarts the delay and forgets a revocation
        out.append(
            ev.VisitStarted(
                visitor.visit_id,
                visitor.visitor_id,
                incoming,
                event.url,
                event.referrer,
                visitor.visit_tracked,
                now,
            )
        )

    def _closed(self, visitor: Visitor, tab_id: str, now: datetime, out: list[ev.Effect]) -> None:
        if visitor.tabs.pop(tab_id, None) is None or visitor.tabs:
            return
        visitor.last_seen_at = now
        visitor.shown = None
        self._waiting.pop(visitor.visitor_id, None)
        visitor.waiting_since = None
        lease = self.pool.leases.get(visitor.visitor_id)
        if lease is not None:
            self._end_lease(lease, LeaseEndReason.CLOSED, now, out)
            self._serve_waiters(now, out)

    def _activity(self, visitor: Visitor, tab_id: str, now: datetime, out: list[ev.Effect]) -> None:
        if not visitor.tabs.get(tab_id, False):
            return  # hidden tabs count as idle
        visitor.last_activity_at = now
        visitor.last_seen_at = now
        visitor.revoked_at = None
        lease = self.pool.leases.get(visitor.visitor_id)
        if lease is not None:
            self._touch(lease, now)
        self._decide(visitor, now, out)

    def _touch(self, lease: Lease, now: datetime) -> None:
        if self.policy.activity_renews:
            self.pool.touch(lease, now)

    # -- the clock ----------------------------------------------------------------------------

    def next_due(self) -> datetime | None:
        """The earliest moment `tick` has something to do (None: nothing is pending)."""
        candidates: list[datetime] = []
        idlest = self.pool.idlest()
        if idlest is not None:
            candidates.append(self._revocation_at(idlest))
        while self._show_due and not self._show_pending(self._show_due[0]):
            heapq.heappop(self._show_due)
        if self._show_due:
            candidates.append(self._show_due[0][0])
        return min(candidates) if candidates else None

    def tick(self, now: datetime) -> list[ev.Effect]:
        out: list[ev.Effect] = []
        freed = False
        while (idlest := self.pool.idlest()) is not None and self._revocation_at(idlest) <= now:
            visitor = self.visitors[idlest.visitor_id]
            self._end_lease(idlest, LeaseEndReason.REVOKED, now, out)
            visitor.revoked_at = now
            self._decide(visitor, now, out)
            freed = True
        while self._show_due and self._show_due[0][0] <= now:
            _, _, visitor_id = heapq.heappop(self._show_due)
            waiting = self.visitors.get(visitor_id)
            if waiting is not None and _waits_for_delay(waiting):
                self._decide(waiting, now, out)
        if freed:
            self._serve_waiters(now, out)
        return out

    def _revocation_at(self, lease: Lease) -> datetime:
        return lease.last_activity_at + timedelta(seconds=self.settings.idle_timeout_s)

    def _schedule_show(self, visitor: Visitor, at: datetime) -> None:
        self._seq += 1
        heapq.heappush(self._show_due, (at, self._seq, visitor.visitor_id))

    def _show_pending(self, entry: tuple[datetime, int, str]) -> bool:
        visitor = self.visitors.get(entry[2])
        return visitor is not None and bool(visitor.tabs)

    # -- deciding -----------------------------------------------------------------------------

    def _decide(self, visitor: Visitor, now: datetime, out: list[ev.Effect]) -> None:
        if not visitor.tabs:
            return  # nothing shows it; a lease now would never end
        kind = self._choose_display(visitor, now, out)
        if kind is DisplayKind.DYNAMIC:
            lease = self.pool.leases[visitor.visitor_id]
            self._show(visitor, kind, lease.e164, now, out)
        else:
            self._show(visitor, kind, self._default(str(kind)), now, out)

    def _choose_display(self, visitor: Visitor, now: datetime, out: list[ev.Effect]) -> DisplayKind:
        settings = self.settings
        if visitor.bot or visitor.visit_id is None or not visitor.visit_tracked:
            return DisplayKind.UNTRACKED
        if visitor.visitor_id in self.pool.leases:
            self._stop_waiting(visitor)
            return DisplayKind.DYNAMIC
        if visitor.revoked_at is not None:
            return DisplayKind.EXPIRED
        if (
            not self._capped(visitor)
            and self._own_hold(visitor, now) is not None
            and self._allocate(visitor, now, out)
        ):
            self._stop_waiting(visitor)
            return DisplayKind.DYNAMIC
        assert visitor.visit_started_at is not None
        if now < visitor.visit_started_at + timedelta(seconds=settings.show_delay_s) or (
            settings.lease_on in _WANT_FIRST and not visitor.wants
        ):
            return DisplayKind.INITIAL
        if self._capped(visitor):
            if visitor.waiting_since is None:  # waits for its address to hold fewer
                out.append(ev.Refused(visitor.visitor_id, visitor.address, "address_cap", now))
                self._start_waiting(visitor, now)
            return DisplayKind.UNTRACKED
        if self._allocate(visitor, now, out):
            self._stop_waiting(visitor)
            return DisplayKind.DYNAMIC
        if visitor.waiting_since is None:
            self._start_waiting(visitor, now)
            top, count = self.pool.top_address()
            out.append(ev.PoolExhausted(visitor.visitor_id, visitor.address, top, count, now))
        return DisplayKind.UNTRACKED

    def _capped(self, visitor: Visitor) -> bool:
        if not visitor.address:
            return False  # in-process callers (tests, tools) name no address
        return self.pool.per_address[visitor.address] >= self.settings.lease_cap_per_address

    def _own_hold(self, visitor: Visitor, now: datetime) -> Number | None:
        number = self.pool.numbers.get(visitor.held or "")
        if (
            number is None
            or number.lease is not None
            or number.last_visitor_id != visitor.visitor_id
            or number.released_at is None
            or now - number.released_at > timedelta(seconds=self.settings.hold_s)
        ):
            return None
        return number

    def _allocate(self, visitor: Visitor, now: datetime, out: list[ev.Effect]) -> bool:
        choice = choose(self, visitor, now)
        if choice is None:
            return False
        e164, victim = choice
        if victim is not None:
            victim_visitor = self.visitors[victim.visitor_id]
            self._end_lease(victim, LeaseEndReason.PREEMPTED, now, out)
            victim_visitor.revoked_at = now
            self._decide(victim_visitor, now, out)
        number = self.pool.numbers.get(e164)
        if number is None:  # grown from the reserve
            self.reserve.remove(e164)
            self.capacity -= 1
            number = Number(e164)
            self.pool.add(number)
            out.append(ev.PoolGrown(e164, now))
        lease = Lease(
            self.record_ids(),
            e164,
            visitor.visitor_id,
            visitor.visit_id,
            visitor.address,
            now,
            now,
        )
        self.pool.lease_number(number, lease)
        visitor.held = None
        out.append(
            ev.LeaseStarted(
                lease.lease_id, e164, visitor.visitor_id, visitor.visit_id, visitor.address, now
            )
        )
        return True

    def _end_lease(
        self, lease: Lease, reason: LeaseEndReason, now: datetime, out: list[ev.Effect]
    ) -> None:
        number = self.pool.numbers[lease.e164]
        self.pool.release(number, now)
        visitor = self.visitors.get(lease.visitor_id)
        if visitor is not None:
            visitor.held = lease.e164
        out.append(
            ev.LeaseEnded(
                lease.lease_id, lease.e164, lease.visitor_id, reason, lease.assigned_at, now
            )
        )

    def _serve_waiters(self, now: datetime, out: list[ev.Effect]) -> None:
        for visitor_id in list(self._waiting):
            visitor = self.visitors[visitor_id]
            if self._capped(visitor):
                continue  # its address still holds its share; the next in line may not
            self._decide(visitor, now, out)
            if visitor.visitor_id not in self.pool.leases:
                break

    def _start_waiting(self, visitor: Visitor, now: datetime) -> None:
        visitor.waiting_since = now
        self._waiting[visitor.visitor_id] = now

    def _stop_waiting(self, visitor: Visitor) -> None:
        if visitor.waiting_since is not None:
            visitor.waiting_since = None
            self._waiting.pop(visitor.visitor_id, None)

    def _show(
        self, visitor: Visitor, kind: DisplayKind, e164: str, now: datetime, out: list[ev.Effect]
    ) -> None:
        if visitor.shown == (kind, e164) or not visitor.tabs:
            return
        visitor.shown = (kind, e164)
        out.append(ev.Show(visitor.visitor_id, kind, e164, now))

    def _default(self, kind: str) -> str:
        return self.rules.defaults[AttributionKind(kind)]

    # -- views --------------------------------------------------------------------------------

    def number_facts(self, e164: str) -> NumberFacts:
        """What attribution needs of `e164` now (`core.attribution.attribute`)."""
        defaults = tuple(k for k in DEFAULT_ORDER if self.rules.defaults.get(k) == e164)
        site_id = self.rules.site_id
        static = self.settings.static.get(e164)
        number = self.pool.numbers.get(e164)
        if defaults or static is not None or number is None:
            in_site = bool(defaults) or static is not None
            return NumberFacts(e164, site_id if in_site else None, defaults, static)
        last: LeaseFacts | None = None
        if number.lease is not None:
            now_held = number.lease
            last = LeaseFacts(
                now_held.lease_id,
                site_id,
                now_held.visitor_id,
                now_held.visit_id,
                now_held.assigned_at,
                None,
            )
        elif number.last_lease_id is not None:
            assert number.last_visitor_id is not None and number.last_assigned_at is not None
            last = LeaseFacts(
                number.last_lease_id,
                site_id,
                number.last_visitor_id,
                number.last_visit_id,
                number.last_assigned_at,
                number.released_at,
            )
        return NumberFacts(e164, site_id, last_lease=last, last_lease_settings=self.settings)

    def shown(self, visitor_id: str) -> tuple[DisplayKind, str] | None:
        visitor = self.visitors.get(visitor_id)
        return visitor.shown if visitor is not None else None


def _waits_for_delay(visitor: Visitor) -> bool:
    return (
        bool(visitor.tabs) and visitor.shown is not None and visitor.shown[0] is DisplayKind.INITIAL
    )

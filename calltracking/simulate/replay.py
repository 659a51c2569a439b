"""Replay a traffic file through the production engine (`core.engine.SiteEngine`) and the
production attribution (`core.attribution.attribute`) on a virtual clock: no sleeping, no sockets.

Rules the replay keeps:
- The site's pool holds `pool` numbers from the first second (pool_max = pool, no reserve to grow
  from), so "a pool of N" means N numbers paid for, whatever the traffic.
- Each traffic visitor is one browser (the engine issues its id at the first hello, a returning
  row presents it again) at an address of its own (per-address rules never bind).
- A row opens one tab at start_s with its url and referrer, sends `activity` every
  `activity_every_s` while active and once at last_active_s (the engine needs only the last
  activity time), and closes its tab at end_s. With `lease_on` visible or interaction the snippet's
  `want` rides on the first activity frame (a visit that never moves never wants a number).
- The clock: row events and the engine's own due times (`next_due`) merged in time order; a
  due time runs before row events of the same instant, and row events of one instant run in the
  order open, activity, call, close (a call at end_s still sees the open tab).
- A call dials what the visitor saw: while the row's tab is open, what the tab shows then; after
  the visit, the last dynamic number the visit was shown, else the last default it showed.
- The call is attributed as the tracker would attribute it then; `correct` means tracked and
  attributed to the visitor who really called. Calls, exhaustion, peaks and leases before
  `warmup_s` are left out of every count (the pool starts empty).
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from calltracking.core.attribution import attribute
from calltracking.core.engine import Policy, SiteEngine, SiteRules
from calltracking.core.engine import events as ev
from calltracking.core.engine.pool import Number
from calltracking.core.kinds import AttributionKind, DisplayKind
from calltracking.core.settings import SiteSettings
from calltracking.simulate.results import Result
from calltracking.simulate.traffic import VisitRow

EPOCH = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday, midnight: the file's second 0
DEFAULTS = {
    AttributionKind.INITIAL: "+70000000001",
    AttributionKind.EXPIRED: "+70000000002",
    AttributionKind.UNTRACKED: "+70000000003",
}
OPEN, ACTIVITY, CALL, CLOSE = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class Scenario:
    settings: SiteSettings = field(default_factory=SiteSettings)
    pool: int = 20
    policy: Policy = field(default_factory=Policy)
    warmup_s: float = 0.0
    activity_every_s: float = 30.0
    domains: tuple[str, ...] = ("shop.example",)
    seed: int = 0


def pool_numbers(size: int) -> list[str]:
    return [f"+7499{n:07d}" for n in range(1, size + 1)]


def at(second: float) -> datetime:
    return EPOCH + timedelta(seconds=second)


def row_events(rows: Sequence[VisitRow], every_s: float) -> list[tuple[float, int, int]]:
    """(second, kind, row) for every row, sorted: the replay's input stream."""
    out: list[tuple[float, int, int]] = []
    for index, row in enumerate(rows):
        out.append((row.start_s, OPEN, index))
        tick = row.start_s + every_s
        while tick < row.last_active_s:
            out.append((tick, ACTIVITY, index))
            tick += every_s
        if row.last_active_s > row.start_s:
            out.append((row.last_active_s, ACTIVITY, index))
        if row.call_at_s is not None:
            out.append((row.call_at_s, CALL, index))
        out.append((row.end_s, CLOSE, index))
    out.sort()
    return out


def replay(rows: Sequence[VisitRow], scenario: Scenario) -> Result:
    return Replay(rows, scenario).run()


class Replay:
    """One run: the engine, the visitors' browsers, and the tallies."""

    def __init__(self, rows: Sequence[VisitRow], scenario: Scenario) -> None:
        self.rows = rows
        self.scenario = scenario
        settings = dataclasses.replace(scenario.settings, pool_max=scenario.pool, pool_min=0)
        counter = itertools.count(1)
        self.engine = SiteEngine(
            SiteRules("sim", settings, DEFAULTS, scenario.domains),
            ids=lambda: f"id{next(counter)}",
            policy=scenario.policy,
            rng=random.Random(scenario.seed),
        )
        for e164 in pool_numbers(scenario.pool):
            self.engine.pool.add(Number(e164))
        self.engine_id: dict[str, str] = {}  # traffic visitor -> engine visitor
        self.traffic_id: dict[str, str] = {}
        self.open_rows: dict[str, set[int]] = {}  # engine visitor -> rows with an open tab
        self.last_dynamic: dict[int, str] = {}
        self.last_shown: dict[int, str] = {}
        self.wants = scenario.settings.lease_on != "load"
        self.tally = Tally(scenario.warmup_s)

    def run(self) -> Result:
        for second, kind, index in row_events(self.rows, self.scenario.activity_every_s):
            now = at(second)
            self._run_due(now)
            self._row_event(second, now, kind, index)
        # Leases per hour over the traffic's span (late calls do not stretch it).
        span_end = max((row.end_s for row in self.rows), default=0.0)
        return self.tally.result(self.scenario, span_end)

    def _run_due(self, now: datetime) -> None:
        while (due := self.engine.next_due()) is not None and due <= now:
            self._effects(self.engine.tick(due), (due - EPOCH).total_seconds())

    def _row_event(self, second: float, now: datetime, kind: int, index: int) -> None:
        row, tab = self.rows[index], f"t{index}"
        if kind == OPEN:
            self._open(row, index, second, now)
            return
        visitor = self.engine_id[row.visitor]
        if kind == ACTIVITY:
            self._effects(self.engine.handle(ev.Activity(visitor, tab), now), second)
            if self.wants and not self.engine.visitors[visitor].wants:
                self._effects(self.engine.handle(ev.Want(visitor), now), second)
        elif kind == CALL:
            self._call(row, index, visitor, second, now)
        else:
            self.open_rows[visitor].discard(index)
            self._effects(self.engine.handle(ev.TabClosed(visitor, tab), now), second)

    def _open(self, row: VisitRow, index: int, second: float, now: datetime) -> None:
        known = self.engine_id.get(row.visitor)
        if known is None:
            address = _address(len(self.engine_id))
        else:
            address = self.engine.visitors[known].address
        hello = ev.TabOpened(known, f"t{index}", address, row.url, row.referrer)
        effects = self.engine.handle(hello, now)
        welcomed = next(e for e in effects if isinstance(e, ev.Welcomed))
        visitor = welcomed.visitor_id
        self.engine_id[row.visitor] = visitor
        self.traffic_id[visitor] = row.visitor
        self.open_rows.setdefault(visitor, set()).add(index)
        self._effects(effects, second)

    def _call(self, row: VisitRow, index: int, visitor: str, second: float, now: datetime) -> None:
        dialed: str | None = None
        if index in self.open_rows.get(visitor, ()):
            shown = self.engine.shown(visitor)
            dialed = shown[1] if shown is not None else None
        if dialed is None:
            dialed = self.last_dynamic.get(index) or self.last_shown.get(index)
        if dialed is None:
            dialed = DEFAULTS[AttributionKind.UNTRACKED]
        verdict = attribute(self.engine.number_facts(dialed), now)
        holder = verdict.lease.visitor_id if verdict.lease is not None else None
        correct = holder is not None and self.traffic_id.get(holder) == row.visitor
        self.tally.call(second, verdict.kind, correct)

    def _effects(self, effects: list[ev.Effect], second: float) -> None:
        for effect in effects:
            if isinstance(effect, ev.Show):
                for index in self.open_rows.get(effect.visitor_id, ()):
                    self.last_shown[index] = effect.e164
                    if effect.kind is DisplayKind.DYNAMIC:
                        self.last_dynamic[index] = effect.e164
            elif isinstance(effect, ev.LeaseStarted):
                self.tally.lease_started(second)
            elif isinstance(effect, ev.LeaseEnded):
                self.tally.lease_ended()
            elif isinstance(effect, ev.PoolExhausted):
                self.tally.exhausted_at(second)


def _address(n: int) -> str:
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


@dataclass(slots=True)
class Tally:
    warmup_s: float
    calls: int = 0
    tracked: int = 0
    correct: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    leased: int = 0
    pool_peak: int = 0
    leases: int = 0
    exhausted: int = 0

    def call(self, second: float, kind: AttributionKind, correct: bool) -> None:
        if second < self.warmup_s:
            return
        self.calls += 1
        self.by_kind[str(kind)] += 1
        if kind.tracked:
            self.tracked += 1
            self.correct += correct

    def lease_started(self, second: float) -> None:
        self.leased += 1
        if second >= self.warmup_s:
            self.leases += 1
            self.pool_peak = max(self.pool_peak, self.leased)

    def lease_ended(self) -> None:
        self.leased -= 1

    def exhausted_at(self, second: float) -> None:
        if second >= self.warmup_s:
            self.exhausted += 1

    def result(self, scenario: Scenario, last_s: float) -> Result:
        hours = max(0.0, last_s - scenario.warmup_s) / 3600
        return Result(
            pool=scenario.pool,
            settings=scenario.settings,
            seed_policy=scenario.policy == Policy.seed(),
            calls=self.calls,
            tracked=self.tracked,
            correct=self.correct,
            by_kind=dict(sorted(self.by_kind.items())),
            pool_peak=self.pool_peak,
            exhausted=self.exhausted,
            leases=self.leases,
            hours=hours,
        )

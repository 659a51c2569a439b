"""Which smallest pool (and which `show_delay_s`, `idle_timeout_s`, `hold_s`) reaches a target
tracked share on a site's own traffic, by replaying it (`replay.py`).

Rules:
- Candidates: the site's current settings, and each of them with one of the three settings
  changed to a value of `ALTERNATIVES` (one change at a time keeps the run count small: a week of
  a busy site takes seconds per replay).
- For the current settings, the smallest pool reaching the target: doubling from 1 until the
  target is reached (or the pool no longer runs out, when a larger pool cannot track more), then
  bisecting. Tracked share grows with the pool for all practical traffic; the search assumes it.
- Another candidate is first tried one number below that answer (and at it, for the correct
  share): only a candidate that reaches the target with fewer numbers is searched further.
- The advice: the smallest pool over all candidates, ties broken by the higher correct share,
  then by the current settings first. When no candidate reaches the target, the one tracking
  the most, at the pool where it stops running out, with `reached` false.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from calltracking.core.settings import SiteSettings, merge_settings
from calltracking.simulate.replay import Scenario, replay
from calltracking.simulate.results import Result
from calltracking.simulate.traffic import VisitRow

ALTERNATIVES: dict[str, tuple[int, ...]] = {
    "show_delay_s": (0, 15, 30),
    "idle_timeout_s": (900, 1800, 3600, 7200),
    "hold_s": (600, 1800, 3600),
}
MAX_POOL = 4096


@dataclass(frozen=True, slots=True)
class Candidate:
    settings: SiteSettings
    result: Result
    reached: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "pool": self.result.pool,
            **{name: getattr(self.settings, name) for name in ALTERNATIVES},
            "tracked_share": round(self.result.tracked_share, 4),
            "correct_share": round(self.result.correct_share, 4),
            "reached": self.reached,
        }


@dataclass(frozen=True, slots=True)
class Advice:
    target: float
    current: Result
    best: Candidate
    candidates: list[Candidate]

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "current": {
                "pool": self.current.pool,
                **{name: getattr(self.current.settings, name) for name in ALTERNATIVES},
                "tracked_share": round(self.current.tracked_share, 4),
                "correct_share": round(self.current.correct_share, 4),
                "calls": self.current.calls,
            },
            "advice": self.best.to_json(),
            "candidates": [c.to_json() for c in self.candidates],
        }


def candidate_settings(current: SiteSettings) -> list[SiteSettings]:
    out = [current]
    for name, values in ALTERNATIVES.items():
        for value in values:
            if value != getattr(current, name):
                out.append(merge_settings(current, {name: value}))
    return out


def advise(
    rows: Sequence[VisitRow],
    current: SiteSettings,
    current_pool: int,
    target: float,
    domains: tuple[str, ...] = (),
) -> Advice:
    def run(settings: SiteSettings, pool: int) -> Result:
        return replay(rows, Scenario(settings, pool=pool, domains=domains))

    now = run(current, current_pool)
    first = smallest_pool(functools.partial(run, current), current, target)
    candidates = [first]
    for settings in candidate_settings(current)[1:]:
        candidates.append(_against(functools.partial(run, settings), settings, target, first))
    reached = [c for c in candidates if c.reached]
    if reached:
        best = min(reached, key=lambda c: (c.result.pool, -c.result.correct_share))
    else:
        best = max(candidates, key=lambda c: (c.result.tracked_share, c.result.correct_share))
    return Advice(target, now, best, candidates)


def _against(
    run: Callable[[int], Result], settings: SiteSettings, target: float, first: Candidate
) -> Candidate:
    """A candidate judged against the current settings' answer: a full search only when it
    beats that pool size (two replays otherwise: one below it, one at it)."""
    if not first.reached:
        return smallest_pool(run, settings, target)
    size = first.result.pool
    if size > 1:
        below = run(size - 1)
        if below.tracked_share >= target:
            return smallest_pool(run, settings, target, high=size - 1, result=below)
    at = run(size)
    return Candidate(settings, at, at.tracked_share >= target)


def smallest_pool(
    run: Callable[[int], Result],
    settings: SiteSettings,
    target: float,
    high: int = 1,
    result: Result | None = None,
) -> Candidate:
    """`result`, when given, is `run(high)` already known to reach the target."""
    low = 0  # misses the target (a pool of 0 tracks nothing)
    if result is None:
        result = run(high)
        while result.tracked_share < target and result.exhausted > 0 and high < MAX_POOL:
            low, high = high, high * 2
            result = run(high)
        if result.tracked_share < target:
            return Candidate(settings, result, False)
    while high - low > 1:
        middle = (low + high) // 2
        attempt = run(middle)
        if attempt.tracked_share >= target:
            high, result = middle, attempt
        else:
            low = middle
    return Candidate(settings, result, True)

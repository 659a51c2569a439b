"""Advice: the three settings a report recommends, each a value and the reason in words.

Rules (MIN_EVIDENCE = 5; a recommendation that changes nothing keeps the current value):
- show_delay_s, from the delays of `initial` calls matched to a visit (see delays.py):
  fewer than 5 -> keep (too little data). Else if more than half came before the current delay
  ended (delay < show_delay_s) -> lower it to the 10th percentile of the delays, rounded down to
  5 s (always below the current delay). Else keep: lowering would not reach those callers.
- idle_timeout_s, from the delays of `expired` calls after the revocation:
  fewer than 5 -> keep. Else if more than half came within one idle timeout of the revocation
  (delay <= idle_timeout_s) -> raise it by the 90th percentile of the delays, rounded up to 5 s
  (at least 5 s), the result capped at MAX_IDLE_TIMEOUT_S. Else keep: the calls came so late that
  holding numbers that long would cost the pool more than it tracks.
- pool_size, from PoolFacts: any exhaustion -> grow to max(peak, size) + margin, margin = 20%
  rounded up, at least 2 (exhaustion is evidence by itself, so no minimum applies); the reason
  says when this passes `pool_max`. Else fewer than 5 visitors got a number -> keep. Else if the
  peak is at most half the size and peak + margin < size -> shrink to max(pool_min,
  peak + margin), when that is still below the size. Else keep: the size fits.
- A reason is one or more sentences for people: it starts with a capital and ends with a period;
  counts agree with their nouns ("1 call", "2 calls"); durations from 2 minutes on are in
  minutes ("15 min", never "900 s"), as `say_s` writes them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from calltracking.core.reports.delays import percentile
from calltracking.core.reports.inputs import PoolFacts

MIN_EVIDENCE = 5
STEP_S = 5
MAX_IDLE_TIMEOUT_S = 86400
POOL_MARGIN_PERCENT = 20
POOL_MARGIN_MIN = 2


@dataclass(frozen=True, slots=True)
class Recommendation:
    value: int
    current: int
    reason: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", sentence(self.reason))

    @property
    def changed(self) -> bool:
        return self.value != self.current

    def to_json(self) -> dict[str, int | str | bool]:
        return {
            "value": self.value,
            "current": self.current,
            "changed": self.changed,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Advice:
    show_delay_s: Recommendation
    idle_timeout_s: Recommendation
    pool_size: Recommendation

    def to_json(self) -> dict[str, dict[str, int | str | bool]]:
        return {
            "show_delay_s": self.show_delay_s.to_json(),
            "idle_timeout_s": self.idle_timeout_s.to_json(),
            "pool_size": self.pool_size.to_json(),
        }


def advise_show_delay(delays_s: Sequence[float], current: int) -> Recommendation:
    """Recommend `show_delay_s` from the initial calls' delays after the visit start."""
    n = len(delays_s)
    if n < MIN_EVIDENCE:
        return Recommendation(current, current, _too_few(n, "the initial number", current))
    within = sum(1 for d in delays_s if d < current)
    if within * 2 <= n:
        return Recommendation(
            current,
            current,
            f"{count(n, 'call')} reached the initial number, {within} of them within "
            f"{say_s(current)} of the visit start: most callers waited longer than the delay, "
            f"so a shorter one would not track them; keep {say_s(current)}",
        )
    value = STEP_S * math.floor(percentile(delays_s, 10) / STEP_S)
    caught = sum(1 for d in delays_s if d >= value)
    return Recommendation(
        value,
        current,
        f"{count(n, 'call')} reached the initial number, {within} of them within "
        f"{say_s(current)} of the visit start: showing the number at {say_s(value)} would "
        f"have tracked {caught} of them",
    )


def advise_idle_timeout(delays_s: Sequence[float], current: int) -> Recommendation:
    """Recommend `idle_timeout_s` from the expired calls' delays after the revocation."""
    n = len(delays_s)
    if n < MIN_EVIDENCE:
        return Recommendation(current, current, _too_few(n, "the expired number", current))
    within = sum(1 for d in delays_s if d <= current)
    if within * 2 <= n:
        return Recommendation(
            current,
            current,
            f"{count(n, 'call')} reached the expired number, {within} of them within "
            f"{say_s(current)} of the revocation: most came so late that holding idle numbers "
            f"that long would cost the pool more than it tracks; keep {say_s(current)}",
        )
    raise_by = max(STEP_S, STEP_S * math.ceil(percentile(delays_s, 90) / STEP_S))
    value = min(current + raise_by, MAX_IDLE_TIMEOUT_S)
    caught = sum(1 for d in delays_s if d <= value - current)
    return Recommendation(
        value,
        current,
        f"{count(n, 'call')} reached the expired number, {within} of them within "
        f"{say_s(current)} of the revocation: keeping idle numbers {say_s(value - current)} longer "
        f"({say_s(value)} in all) would have tracked {caught} of them",
    )


def advise_pool_size(
    pool: PoolFacts, visitors_with_number: int, pool_min: int, pool_max: int
) -> Recommendation:
    """Recommend the pool size from its peak use and exhaustions."""
    size, peak = pool.size, pool.peak_leased
    use = (
        f"at most {peak} of {count(size, 'number')} {'was' if peak == 1 else 'were'} leased at once"
    )
    if pool.exhaustion_count > 0:
        base = max(peak, size)
        value = base + pool_margin(base)
        reason = (
            f"the pool ran out {_times(pool.exhaustion_count)} ({use}), so those visitors "
            f"saw the untracked number: {count(value, 'number')} (the peak plus 20%, at least 2) "
            f"would have served them"
        )
        if value > pool_max:
            reason += f"; this is above pool_max {pool_max}, raise it too"
        return Recommendation(value, size, reason)
    if visitors_with_number < MIN_EVIDENCE:
        return Recommendation(
            size,
            size,
            f"only {count(visitors_with_number, 'visitor')} got a number in this period; at "
            f"least {MIN_EVIDENCE} are needed to judge the pool size; keep "
            f"{count(size, 'number')}",
        )
    wanted = peak + pool_margin(peak)
    value = max(pool_min, wanted)
    if peak * 2 <= size and value < size:
        floor = f", held up by pool_min {pool_min}" if pool_min > wanted else ""
        return Recommendation(
            value,
            size,
            f"{use} and the pool never ran out: {count(value, 'number')} (the peak plus 20%, "
            f"at least 2{floor}) would do",
        )
    return Recommendation(
        size,
        size,
        f"{use} and the pool never ran out: the size fits; keep {count(size, 'number')}",
    )


def pool_margin(peak: int) -> int:
    """Headroom over a peak: 20% rounded up, at least 2 numbers."""
    return max(POOL_MARGIN_MIN, -(-peak * POOL_MARGIN_PERCENT // 100))  # ceil without floats


def say_s(seconds: int) -> str:
    """A duration in words: "35 s", "20 min", "9 min 40 s"."""
    if seconds < 120:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    return f"{minutes} min" if rest == 0 else f"{minutes} min {rest} s"


def _too_few(n: int, number: str, current: int) -> str:
    return (
        f"only {count(n, 'call')} to {number} could be matched to a visitor who saw it; at least "
        f"{MIN_EVIDENCE} are needed to advise; keep {say_s(current)}"
    )


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def count(n: int, noun: str) -> str:
    """ "1 call", "2 calls": a count with its noun agreeing."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def sentence(text: str) -> str:
    """Capitalised, ending with a period (a reason is shown as prose)."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."

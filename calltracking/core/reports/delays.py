"""How long after the default number appeared a call to it came: the figures that tune the
display delay (`initial`) and the idle timeout (`expired`).

Rules:
- A call of kind K to number N at time t is matched to a display period of the same kind K and
  number N that covers t (both ends included). Of several candidates (many visitors see the same
  default number at once) the most recently started one wins; its delay is t - anchor_at, never
  below 0. A call with no candidate is `unmatched`.
- Buckets are half-open [from_s, to_s) over fixed edges; the last one is open-ended. Every
  histogram lists every bucket (zeros included) and then the `unmatched` one, so charts line up.
- A site whose defaults share one number gets all calls to it as `initial` (CONTRACT.md), so only
  `initial` periods can match them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from calltracking.core.records import CallRecord
from calltracking.core.reports.inputs import DisplayPeriod

# Seconds: fine where visitors decide to call (the first minute), coarse where the idle timeout
# lives (tens of minutes).
BUCKET_EDGES_S: tuple[int, ...] = (0, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1800, 3600)
UNMATCHED = "unmatched"


@dataclass(frozen=True, slots=True)
class DelayBucket:
    label: str
    from_s: int | None
    to_s: int | None
    calls: int

    def to_json(self) -> dict[str, str | int | None]:
        return {"label": self.label, "from_s": self.from_s, "to_s": self.to_s, "calls": self.calls}


@dataclass(frozen=True, slots=True)
class DelayFigures:
    """The delays of one default kind's matched calls and how many calls matched nothing."""

    delays_s: tuple[float, ...]
    unmatched: int

    @property
    def histogram(self) -> tuple[DelayBucket, ...]:
        counts = [0] * len(BUCKET_EDGES_S)
        for delay in self.delays_s:
            counts[bucket_index(delay)] += 1
        buckets = [
            DelayBucket(_label(lo, hi), lo, hi, n)
            for lo, hi, n in zip(BUCKET_EDGES_S, (*BUCKET_EDGES_S[1:], None), counts, strict=True)
        ]
        return (*buckets, DelayBucket(UNMATCHED, None, None, self.unmatched))


def bucket_index(delay_s: float) -> int:
    """The index of the bucket [edge_i, edge_i+1) that holds `delay_s` (negatives go first)."""
    index = 0
    for i, edge in enumerate(BUCKET_EDGES_S):
        if delay_s >= edge:
            index = i
    return index


def _label(lo: int, hi: int | None) -> str:
    return f"{lo}+" if hi is None else f"{lo}-{hi}"


def match_display(call: CallRecord, displays: Sequence[DisplayPeriod]) -> DisplayPeriod | None:
    """The display period a default-number call came from, or None (see the module rules)."""
    candidates = [
        d
        for d in displays
        if d.kind == call.kind and d.e164 == call.did and d.covers(call.started_at)
    ]
    return max(candidates, key=lambda d: d.started_at, default=None)


def delay_figures(
    calls: Sequence[CallRecord], displays: Sequence[DisplayPeriod], kind: str
) -> DelayFigures:
    """Match every call of `kind` among `calls` and collect its delay."""
    relevant = [d for d in displays if d.kind == kind]
    delays: list[float] = []
    unmatched = 0
    for call in calls:
        if call.kind != kind:
            continue
        period = match_display(call, relevant)
        if period is None:
            unmatched += 1
        else:
            delays.append(max(0.0, (call.started_at - period.anchor_at).total_seconds()))
    return DelayFigures(delays_s=tuple(delays), unmatched=unmatched)


def percentile(values: Sequence[float], p: int) -> float:
    """Nearest-rank percentile: the smallest value with at least p% of the values at or below."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, -(-p * len(ordered) // 100))  # ceil without floats
    return ordered[rank - 1]

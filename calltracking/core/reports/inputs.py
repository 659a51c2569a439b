"""What a site report is built from, besides the calls: visits, default-number displays, the pool.

Rules:
- All times are aware UTC `datetime`s, like `CallRecord`'s.
- A `DisplayPeriod` is one stretch during which a visitor's tabs showed one of the site's default
  numbers. `anchor_at` is what a delay is measured from: the visit start for `initial`, the
  revocation of the lease for `expired` (for `untracked` the period start will do).
- `PoolFacts` summarise the pool over the report window: its size at the end, the most numbers
  leased at once, and how many times a visitor could not get a number (`pool.exhausted`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class VisitRecord:
    """One visit (a visitor's arrival from one source/medium/campaign)."""

    id: str
    visitor_id: str
    started_at: datetime
    source: str
    medium: str
    campaign: str | None
    got_number: bool
    bot: bool = False  # the visitor is a robot: counted apart, never in visits or conversion


@dataclass(frozen=True, slots=True)
class DisplayPeriod:
    """A stretch during which a visitor's tabs showed a default number."""

    visitor_id: str
    kind: str  # "initial" | "expired" | "untracked"
    e164: str
    started_at: datetime
    ended_at: datetime | None  # None: still shown
    anchor_at: datetime  # visit start for initial, revocation time for expired

    def covers(self, at: datetime) -> bool:
        """True when the number was on screen at `at` (both ends included)."""
        return self.started_at <= at and (self.ended_at is None or at <= self.ended_at)


@dataclass(frozen=True, slots=True)
class PoolSample:
    """The pool observed at one instant."""

    at: datetime
    leased: int
    size: int


@dataclass(frozen=True, slots=True)
class PoolFacts:
    size: int
    peak_leased: int
    exhaustion_count: int

    def to_json(self) -> dict[str, int]:
        return {
            "size": self.size,
            "peak_leased": self.peak_leased,
            "exhaustion_count": self.exhaustion_count,
        }


def pool_facts(samples: Sequence[PoolSample], exhaustion_count: int) -> PoolFacts:
    """Summarise samples: size from the newest sample, the peak over all (0 without samples)."""
    if not samples:
        return PoolFacts(size=0, peak_leased=0, exhaustion_count=exhaustion_count)
    newest = max(samples, key=lambda s: s.at)
    return PoolFacts(
        size=newest.size,
        peak_leased=max(s.leased for s in samples),
        exhaustion_count=exhaustion_count,
    )

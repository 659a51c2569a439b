"""What one replay found, as JSON and as rows of a sweep table.

Shares are of all calls counted (after the warm-up): `tracked_share` = tracked / calls,
`correct_share` = correct / calls (a call counts as correct only when it is tracked and attributed
to the visitor who really called). With no calls both shares are 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from calltracking.core.settings import SiteSettings

SWEPT = ("show_delay_s", "idle_timeout_s", "hold_s", "preempt_idle_s", "cooldown_days")


@dataclass(frozen=True, slots=True)
class Result:
    pool: int
    settings: SiteSettings
    seed_policy: bool
    calls: int
    tracked: int
    correct: int
    by_kind: dict[str, int]
    pool_peak: int
    exhausted: int
    leases: int
    hours: float

    @property
    def tracked_share(self) -> float:
        return self.tracked / self.calls if self.calls else 0.0

    @property
    def correct_share(self) -> float:
        return self.correct / self.calls if self.calls else 0.0

    @property
    def leases_per_hour(self) -> float:
        return self.leases / self.hours if self.hours > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "pool": self.pool,
            "policy": "seed" if self.seed_policy else "product",
            "settings": {name: getattr(self.settings, name) for name in SWEPT}
            | {"lease_on": self.settings.lease_on},
            "calls": self.calls,
            "tracked": self.tracked,
            "correct": self.correct,
            "tracked_share": round(self.tracked_share, 4),
            "correct_share": round(self.correct_share, 4),
            "by_kind": self.by_kind,
            "untracked": self.by_kind.get("untracked", 0),
            "pool_peak": self.pool_peak,
            "exhausted": self.exhausted,
            "leases": self.leases,
            "leases_per_hour": round(self.leases_per_hour, 2),
            "hours": round(self.hours, 2),
        }


def sweep_table(results: Sequence[Result], varied: Sequence[str] = ()) -> str:
    """A Markdown table, one row per result, with the settings that vary as columns."""
    head = ["pool", *varied, "calls", "tracked", "correct", "peak", "exhausted", "leases/h"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" for _ in head) + "|"]
    for r in results:
        cells = [
            str(r.pool),
            *(_plain(getattr(r.settings, name)) for name in varied),
            str(r.calls),
            f"{r.tracked_share:.1%}",
            f"{r.correct_share:.1%}",
            str(r.pool_peak),
            str(r.exhausted),
            f"{r.leases_per_hour:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plain(value: object) -> str:
    if isinstance(value, float) and value == int(value):
        return str(int(value))
    return str(value)

"""Rate-limited log lines: a flood of refusals writes one line per interval, not one per peer.

Rules kept here:
- The first event of a key is logged at once; later events of that key within `interval_s` are
  only counted, and the next line that is logged says how many were held back.
- Time is a parameter (monotonic seconds), so the rule is tested without a clock.
- Keys are few and chosen by the caller (a kind of refusal, not a peer address), so the table
  stays small whatever a flood does.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class LogThrottle:
    interval_s: float = 60.0
    _last: dict[str, float] = field(default_factory=dict)
    _held: dict[str, int] = field(default_factory=dict)

    def admit(self, key: str, now: float) -> int | None:
        """None when this event is only counted; else how many were held back before it."""
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)

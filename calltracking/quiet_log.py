"""Log lines about a repeating failure (a database or broker away, a flood of refusals) that
stay readable: the first one at WARNING with the error in one line, then at most one line per
`interval_s` counting what was left out, and one INFO line when it works again. No traceback:
the failure is outside the process, and a traceback every 0.2 s buries everything else.

Time is a parameter (a monotonic clock reading), so tests need no sleeping.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field


@dataclass(slots=True)
class QuietLog:
    logger: logging.Logger
    what: str  # e.g. "database unavailable"
    interval_s: float = 60.0
    _failing: bool = field(default=False, init=False)
    _last_at: float = field(default=float("-inf"), init=False)
    _left_out: int = field(default=0, init=False)

    def failed(self, exc: BaseException, now: float) -> None:
        if self._failing and now - self._last_at < self.interval_s:
            self._left_out += 1
            return
        self.logger.warning(
            "%s: %s: %s (%d more like it not logged)",
            self.what,
            type(exc).__name__,
            _one_line(exc),
            self._left_out,
        )
        self._failing, self._last_at, self._left_out = True, now, 0

    def recovered(self) -> None:
        if self._failing:
            self.logger.info("%s: working again", self.what)
        self._failing, self._left_out = False, 0


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300]

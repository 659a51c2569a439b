"""Reconnect delays: exponential back-off with jitter, reset after a successful login.

Delay n is uniform in [b/2, b] with b = min(maximum, initial * factor**n) ("equal jitter"), so a
fleet of listeners restarted together does not reconnect in lockstep, and a dead Asterisk is
retried at most every `maximum` seconds.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(
        self, initial: float, maximum: float, factor: float = 2.0, rng: random.Random | None = None
    ) -> None:
        self._initial = initial
        self._maximum = maximum
        self._factor = factor
        self._rng = rng or random.Random()
        self._attempt = 0

    def next_delay(self) -> float:
        base = min(self._maximum, self._initial * self._factor ** min(self._attempt, 60))
        self._attempt += 1
        return self._rng.uniform(base / 2, base)

    def reset(self) -> None:
        self._attempt = 0

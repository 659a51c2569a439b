"""What one export attempt came to, and when to try again.

Rules this module keeps:
- Every sender returns exactly one outcome and never raises for a peer's behaviour:
  `Sent` (accepted), `RetryLater` (transient: 5xx, 408, 429/420 quotas, timeouts, connection
  errors), `Hopeless` (a request that cannot succeed as it is: other 4xx, an invalid payload),
  `Skipped` (nothing to send: too old for the target, untracked, spam, no analytics client id).
- The caller stores the outcome; `export_state` maps it to the call's `ExportState`, turning a
  `RetryLater` into `failed` once `MAX_ATTEMPTS` attempts have been made.
- `backoff_delay` is pure: exponential from `base_s`, capped at `cap_s`, with "equal jitter"
  (the delay lies in [d/2, d)) so that many calls failing together do not retry together.
"""

from __future__ import annotations

from dataclasses import dataclass

from calltracking.core.kinds import ExportState

# With the default base and cap, 20 attempts span at least about 7 hours (at most about 14):
# long enough to ride out an overnight outage of a target, well inside GA4's 72-hour window.
MAX_ATTEMPTS = 20


@dataclass(frozen=True, slots=True)
class Sent:
    detail: str


@dataclass(frozen=True, slots=True)
class RetryLater:
    reason: str


@dataclass(frozen=True, slots=True)
class Hopeless:
    reason: str


@dataclass(frozen=True, slots=True)
class Skipped:
    reason: str


Outcome = Sent | RetryLater | Hopeless | Skipped

# Statuses worth another try: timeouts, quotas (Metrika documents both 429 and 420), "too early".
_TRANSIENT_4XX = frozenset({408, 420, 425, 429})


def outcome_for_status(status: int, detail: str) -> Outcome:
    """The outcome of an HTTP answer, `detail` saying what was sent (never a secret)."""
    if 200 <= status < 300:
        return Sent(f"{detail}: HTTP {status}")
    if status >= 500 or status in _TRANSIENT_4XX:
        return RetryLater(f"{detail}: HTTP {status}")
    return Hopeless(f"{detail}: HTTP {status}")


def backoff_delay(attempt: int, *, base_s: float = 30, cap_s: float = 3600, jitter: float) -> float:
    """Seconds to wait after failed attempt number `attempt` (1 = the first attempt failed).

    `jitter` is a random number in [0, 1) supplied by the caller (`random.random()`), so the
    function stays pure and tests can pin it.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    if not 0 <= jitter < 1:
        raise ValueError("jitter must be in [0, 1)")
    if base_s <= 0 or cap_s < base_s:
        raise ValueError("need 0 < base_s <= cap_s")
    # Bound the exponent so huge attempt numbers cannot overflow a float.
    ceiling = min(cap_s, base_s * 2.0 ** min(attempt - 1, 64))
    return ceiling / 2 + ceiling / 2 * jitter


def export_state(outcome: Outcome, attempts: int) -> ExportState:
    """The state to store after `attempts` attempts (this one included) ended in `outcome`."""
    match outcome:
        case Sent():
            return ExportState.SENT
        case Skipped():
            return ExportState.SKIPPED
        case Hopeless():
            return ExportState.FAILED
        case RetryLater():
            return ExportState.PENDING if attempts < MAX_ATTEMPTS else ExportState.FAILED

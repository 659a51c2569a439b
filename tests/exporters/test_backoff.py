"""Outcomes, back-off and the export state an outcome leads to."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calltracking.core.kinds import ExportState
from calltracking.exporters.outcome import (
    MAX_ATTEMPTS,
    Hopeless,
    Outcome,
    RetryLater,
    Sent,
    Skipped,
    backoff_delay,
    export_state,
    outcome_for_status,
)


@pytest.mark.parametrize(
    ("attempt", "jitter", "expected"),
    [
        (1, 0.0, 15.0),
        (1, 0.5, 22.5),
        (2, 0.0, 30.0),
        (3, 0.0, 60.0),
        (8, 0.0, 1800.0),  # 30 * 2**7 = 3840, capped at 3600
        (9, 0.0, 1800.0),
        (1000, 0.0, 1800.0),
        (10**9, 0.999, 1800.0 + 1800.0 * 0.999),
    ],
)
def test_backoff_table(attempt: int, jitter: float, expected: float) -> None:
    assert backoff_delay(attempt, jitter=jitter) == pytest.approx(expected)


@given(
    attempt=st.integers(1, 10_000),
    jitter=st.floats(0, 1, exclude_max=True),
    base=st.floats(0.001, 1000),
    extra=st.floats(0, 100_000),
)
def test_backoff_stays_within_half_ceiling_and_cap(
    attempt: int, jitter: float, base: float, extra: float
) -> None:
    cap = base + extra
    delay = backoff_delay(attempt, base_s=base, cap_s=cap, jitter=jitter)
    ceiling = min(cap, base * 2 ** min(attempt - 1, 64))
    assert ceiling / 2 <= delay <= ceiling <= cap
    assert delay > 0


@given(attempt=st.integers(1, 40))
def test_backoff_never_shrinks_as_attempts_grow(attempt: int) -> None:
    assert backoff_delay(attempt + 1, jitter=0) >= backoff_delay(attempt, jitter=0)


@pytest.mark.parametrize(
    ("kwargs", "attempt"),
    [
        ({"jitter": 1.0}, 1),
        ({"jitter": -0.1}, 1),
        ({"jitter": 0.0}, 0),
        ({"jitter": 0, "base_s": 0}, 1),
    ],
)
def test_backoff_refuses_nonsense(kwargs: dict[str, float], attempt: int) -> None:
    with pytest.raises(ValueError):
        backoff_delay(attempt, **kwargs)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, Sent), (204, Sent), (299, Sent),
        (500, RetryLater), (502, RetryLater), (503, RetryLater),
        (408, RetryLater), (420, RetryLater), (429, RetryLater),
        (400, Hopeless), (401, Hopeless), (403, Hopeless), (404, Hopeless), (410, Hopeless),
        (301, Hopeless),
    ],
)  # fmt: skip
def test_outcome_for_status(status: int, kind: type) -> None:
    outcome = outcome_for_status(status, "target")
    assert isinstance(outcome, kind)
    assert str(status) in str(outcome)


@pytest.mark.parametrize(
    ("outcome", "attempts", "state"),
    [
        (Sent("ok"), 1, ExportState.SENT),
        (Skipped("spam"), 1, ExportState.SKIPPED),
        (Hopeless("400"), 1, ExportState.FAILED),
        (RetryLater("500"), 1, ExportState.PENDING),
        (RetryLater("500"), MAX_ATTEMPTS - 1, ExportState.PENDING),
        (RetryLater("500"), MAX_ATTEMPTS, ExportState.FAILED),
    ],
)
def test_export_state(outcome: Outcome, attempts: int, state: ExportState) -> None:
    assert export_state(outcome, attempts) is state


def test_outcomes_are_frozen_values() -> None:
    assert Sent("x") == Sent("x")
    assert RetryLater("x") != Hopeless("x")  # type: ignore[comparison-overlap]
    with pytest.raises(AttributeError):
        Sent("x").detail = "y"  # type: ignore[misc]

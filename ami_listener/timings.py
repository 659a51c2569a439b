"""Every wait of the AMI listener in one value, so tests can shrink them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Timings:
    """Every wait of the listener, so tests can shrink them."""

    connect_timeout_s: float = 10.0
    login_timeout_s: float = 10.0
    action_timeout_s: float = 15.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    ping_interval_s: float = 20.0
    reconcile_interval_s: float = 600.0
    sweep_interval_s: float = 30.0
    settle_s: float = 3.0
    recording_poll_s: float = 2.0
    recording_wait_s: float = 60.0

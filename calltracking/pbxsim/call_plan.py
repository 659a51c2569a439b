"""What is fixed about one simulated inbound call before it starts, and how it may end.

Values only: the plan, the outcomes and who hangs up; `caller_all` renders the plan's caller as
`${CALLERID(all)}` shows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

ANONYMOUS = "anonymous"


class Outcome(StrEnum):
    ANSWERED = "answered"
    MISSED = "missed"
    BUSY = "busy"
    FAILED = "failed"
    HANGUP_DURING_AGI = "hangup_during_agi"


class HangupBy(StrEnum):
    OPERATOR = "operator"
    CALLER = "caller"


@dataclass(frozen=True, slots=True)
class CallPlan:
    """Everything about one call that is fixed before it starts."""

    did: str
    caller: str | None  # None: no caller id at all; "anonymous": withheld
    context: str
    trunk_channel: str
    uniqueid: str
    operator_suffix: str  # the `-NNNNNNNN` of the operator channel
    operator_uniqueid: str
    operator: str  # default dial target (what did-targets returns)
    bridge_id: str
    agi_app_data: str
    recording_path: str  # as Asterisk names it (MIXMONITOR_FILENAME)
    dial_timeout_s: int
    route_context: str = ""  # the shipped dialplan's route (SimConfig.route_context)


def caller_all(caller: str | None) -> str:
    """`${CALLERID(all)}` before the dialplan changes the name."""
    if caller is None:
        return '"" <>'
    if caller == ANONYMOUS:
        return '"Anonymous" <anonymous>'
    return f'"" <{caller}>'

"""One call's state, and the rules that read that state alone (no other call, no clock).

start          an opened call is *pending* until the first of: a Newexten of a trunk channel
               running an application that acts on the call (anything but PASSIVE_APPS), a
               Newstate Up of a trunk channel, a Dial*/Bridge*/Hangup* event of the call, or
               another channel joining the call (`settles`; `settle_s` is the tracker's).
DID            CALLTRACKING_DID (any `_` prefix) set on the call's channels, else the Exten the
               first trunk channel had in the trunk context.
recording      VarSet MIXMONITOR_FILENAME (the first) or CALLTRACKING_RECORDING (always wins) on
               any channel of the call.
status         answered; else the trunk channel's dial status (DialEnd, VarSet DIALSTATUS): BUSY
               -> busy, CONGESTION/CHANUNAVAIL -> failed, any other -> missed; else the inbound
               channel's cause: 17 -> busy, congestion-like causes -> failed; else missed (no
               answer, caller gave up, hung up during the AGI); reconciled with nothing known ->
               unknown.
hangup_cause   the Cause of the inbound channel (the trunk channel that ran the dialplan).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from calltracking.core.callflow.facts import CallEnded
from calltracking.core.kinds import CallStatus
from calltracking.core.records import CallKey

# Dialplan applications that only compute or jump; anything else means the call is being handled.
PASSIVE_APPS = frozenset(
    app.lower()
    for app in (
        "Set",
        "MSet",
        "NoOp",
        "Verbose",
        "Log",
        "Goto",
        "GotoIf",
        "GotoIfTime",
        "Gosub",
        "GosubIf",
        "Return",
        "ExecIf",
        "ExecIfTime",
        "AppDial",
        "AppDial2",
        "Macro",
        "MacroExit",
    )
)
SETTLING_EVENTS = frozenset(
    {"dialbegin", "dialend", "bridgeenter", "hangup", "hanguprequest", "softhanguprequest"}
)
BUSY_CAUSE = 17
# Q.850: no circuit, network out of order, temporary failure, congestion, not available.
FAILED_CAUSES = frozenset({34, 38, 41, 42, 44, 47})


@dataclass(slots=True)
class CallState:
    key: CallKey
    first_at: datetime  # event time of the first event: the call's start
    seen_at: datetime  # `now` of the first event
    last_at: datetime
    last_seen: datetime
    trunk: dict[str, str] = field(default_factory=dict)  # uniqueid -> channel name
    live: dict[str, str] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    causes: dict[str, int | None] = field(default_factory=dict)
    inbound: str | None = None
    exten: str = ""
    did_var: str = ""
    caller: str = ""
    settled: bool = False
    ignored: bool = False
    answered: bool = False
    dial_status: str = ""
    recording: str = ""
    recording_explicit: bool = False
    recording_reported: str = ""
    ended: CallEnded | None = None
    ended_seen: datetime | None = None


def settles(call: CallState, name: str, ev: dict[str, str], uid: str, new: bool) -> bool:
    """Whether this event ends the pending wait of `call` (the `start` rule)."""
    if name in SETTLING_EVENTS:
        return True
    if uid not in call.trunk:
        return new  # an operator leg joined: the dialplan is routing the call
    if name == "newexten":
        return ev.get("application", "").lower() not in PASSIVE_APPS
    return name == "newstate" and ev.get("channelstate", "") == "6"


def note_variable(call: CallState, ev: dict[str, str]) -> None:
    """A VarSet: the DID, the dial status or the recording it names."""
    variable = ev.get("variable", "").lstrip("_").upper()
    value = ev.get("value", "")
    if not value:
        return
    if variable == "CALLTRACKING_DID":
        call.did_var = value
    elif variable == "DIALSTATUS" and ev.get("uniqueid", "") in call.trunk:
        call.dial_status = value.upper()
    elif variable == "CALLTRACKING_RECORDING":
        call.recording, call.recording_explicit = value, True
    elif variable == "MIXMONITOR_FILENAME" and not call.recording:
        call.recording = value


def outcome(call: CallState, reconciled: bool) -> tuple[CallStatus, int | None]:
    """The `status` and `hangup_cause` of an ending call."""
    first_trunk = next(iter(call.trunk), None)
    cause = call.causes.get(call.inbound or first_trunk or "")
    if call.answered:
        return CallStatus.ANSWERED, cause
    dial = call.dial_status
    if dial == "BUSY":
        return CallStatus.BUSY, cause
    if dial in ("CONGESTION", "CHANUNAVAIL"):
        return CallStatus.FAILED, cause
    if cause == BUSY_CAUSE:
        return CallStatus.BUSY, cause
    if cause in FAILED_CAUSES:
        return CallStatus.FAILED, cause
    if reconciled and not dial and cause is None:
        return CallStatus.UNKNOWN, None  # vanished while we were not looking
    return CallStatus.MISSED, cause

"""What each recorded AMI transcript must become: one call, field by field.

Shared by the call-flow tests (events -> facts) and the listener tests (TCP -> recorder).
`recording` is the file name under the monitor folder's `calltracking/` subfolder, as the
capture's dialplan named it; None when the transcript cannot show it (the limited user sees no
VarSet) or no MixMonitor ran.
"""

from __future__ import annotations

from calltracking.core.kinds import CallStatus

OPERATOR = "Local/operator@operators"

# name: (linkedid, did, caller, answered_by, status, cause, recording)
Expected = tuple[str, str, str | None, str | None, CallStatus, int, str | None]
EXPECTED: dict[str, Expected] = {
    "answered_call": (
        "1795592516.0",
        "+74951110001",
        "+79161234567",
        OPERATOR,
        CallStatus.ANSWERED,
        16,
        "1795592516.1.wav",
    ),
    "answered_call_limited_user": (
        "1795592516.0",
        "+74951110001",
        "+79161234567",
        OPERATOR,
        CallStatus.ANSWERED,
        16,
        None,
    ),
    "no_answer": (
        "1795592531.14",
        "+74951110002",
        "+79031112233",
        None,
        CallStatus.MISSED,
        16,
        "1795592531.15.wav",
    ),
    "busy": (
        "1795592545.22",
        "+74951110003",
        "+79265554433",
        None,
        CallStatus.BUSY,
        16,
        "1795592545.23.wav",
    ),
    "agi_down": (
        "1795592551.30",
        "+74951110001",
        "+79261112233",
        OPERATOR,
        CallStatus.ANSWERED,
        16,
        "1795592551.31.wav",
    ),
    "anonymous_caller": (
        "1795592565.51",
        "+74951110001",
        None,
        OPERATOR,
        CallStatus.ANSWERED,
        16,
        "1795592565.52.wav",
    ),
    "no_callerid": (
        "1795592571.58",
        "+74951110001",
        None,
        OPERATOR,
        CallStatus.ANSWERED,
        16,
        "1795592571.59.wav",
    ),
    "unknown_did": (
        "1795592578.65",
        "+74959999999",
        "+79161234567",
        OPERATOR,
        CallStatus.ANSWERED,
        16,
        "1795592578.66.wav",
    ),
    "caller_hangs_up_during_agi": (
        "1795592585.72",
        "+74951110009",
        "+79161234567",
        None,
        CallStatus.MISSED,
        19,
        None,
    ),
    "answered_call_timestampevents": (
        "1795592604.76",
        "+74951110001",
        "+79161234567",
        OPERATOR,
        CallStatus.ANSWERED,
        16,
        "1795592604.77.wav",
    ),
}

"""The AMI events of one inbound call up to its Dial, phase by phase (pure: no I/O, no clock).

Modelled event for event on the captures in `fixtures/asterisk/` (Asterisk 22.10.1 running that
folder's `extensions.conf`), with these deliberate differences, all production-like:
- The inbound channel is a trunk channel (`PJSIP/trunk-0000002a`), not `Local/<DID>@from-trunk;2`.
  The Local `;1` "caller's phone" of the captures does not exist, so the call's Linkedid is the
  trunk channel's Uniqueid, and its Local artefacts (LocalBridge, AppDial2, the Originate's
  DialBegin/DialEnd without `Channel`, OriginateResponse, NewConnectedLine on the inbound leg)
  are not emitted.
- The operator is one channel `PJSIP/<operator>-NNNNNNNN` dialed as `Dial(PJSIP/<operator>,T)`;
  it carries the events of the captures' `Local/...@operators;1` leg. The `;2` half running the
  `[operators]` dialplan is not emitted (a phone runs no dialplan).
- The AGI line is the contract's `AGI(agi://HOST:PORT/calltracking,${EXTEN})`.
- With `CALLTRACKING_RECORD=0` the MixMonitor priorities (12, 13) are skipped.
Kept exactly as captured: the dialplan priorities 1..19 and their AppData, the VarSet names and
values, AGIExec pairs around the AGI's own VarSets, AGISTATUS, MIXMONITOR_FILENAME, Dial VarSets,
DialBegin/DialState/DialEnd, Bridge*, HangupRequest/SoftHangupRequest/Hangup and their causes,
two Cdr for a failed Dial, CEL names, and Newchannel with `CallerIDNum: <unknown>` followed by
NewCallerid (absent when there is no caller id).
Each method returns the events of one phase; the driver (`calls.py`) paces them in time. What the
Dial comes to (ringing, answer, hangups, a failed dial) is `scenario`'s.
"""

from __future__ import annotations

from dataclasses import replace

from calltracking.pbxsim.call_plan import ANONYMOUS, CallPlan, caller_all
from calltracking.pbxsim.messages import AmiMessage
from calltracking.pbxsim.snapshots import (
    UNKNOWN,
    CdrRecord,
    CelApp,
    Snapshot,
    agi_exec,
    cel,
    channel_event,
    dial_event,
    hangup,
    hangup_extra,
    newexten,
    varset,
)

NO_APP = CelApp()


CALLING_PRES = ("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")


DIAL_VARIABLES = (
    "DIALSTATUS", "DIALEDPEERNUMBER", "DIALEDPEERNAME", "ANSWEREDTIME", "ANSWEREDTIME_MS",
    "DIALEDTIME", "DIALEDTIME_MS", "RINGTIME", "RINGTIME_MS", "PROGRESSTIME", "PROGRESSTIME_MS",
)  # fmt: skip


class CallSetup:
    """One call's channels and variables, advanced phase by phase up to the Dial."""

    def __init__(self, plan: CallPlan, started_at: float) -> None:
        self.plan = plan
        self.started_at = started_at
        self.answered_at: float | None = None
        self.inbound = Snapshot(
            channel=plan.trunk_channel, state=4, context=plan.context, exten=plan.did,
            priority=1, uniqueid=plan.uniqueid, linkedid=plan.uniqueid,
        )  # fmt: skip
        self.operator: Snapshot | None = None
        self.variables: dict[str, str] = {}
        self.userfield = ""
        self.recording_file = ""
        self.cdr_source = ""
        self.dial_data = ""
        self.context = plan.context  # the dialplan context the inbound channel runs in now

    # -- helpers -------------------------------------------------------------------------------
    def _exten(self, priority: int, app: str, data: str, context: str | None = None) -> AmiMessage:
        self.inbound = replace(self.inbound, priority=priority, context=context or self.context)
        return newexten(self.inbound, app, data)

    def _set(self, name: str, value: str) -> AmiMessage:
        self.variables[name.lstrip("_")] = value
        return varset(self.inbound, name, value)

    def _cel(self, snap: Snapshot, name: str, at: float, app: CelApp = NO_APP) -> AmiMessage:
        return cel(snap, name, at, app)

    def _op(self) -> Snapshot:
        assert self.operator is not None, "no operator leg yet"
        return self.operator

    def _end_cels(self, at: float, cause: int, source: str, status: str) -> list[AmiMessage]:
        return [
            self._cel(
                self.inbound, "HANGUP", at, CelApp(extra=hangup_extra(cause, source, status))
            ),
            self._cel(self.inbound, "CHAN_END", at),
            self._cel(self.inbound, "LINKEDID_END", at),
        ]

    def _cdr(self, at: float, disposition: str, dest: str, last: tuple[str, str]) -> AmiMessage:
        start = self.started_at if last[0] != "Hangup" else at
        return CdrRecord(
            snap=self.inbound, destination_channel=dest, last_app=last[0], last_data=last[1],
            start=start, answer=self.answered_at, end=at, disposition=disposition,
            userfield=self.userfield, recording_file=self.recording_file, source=self.cdr_source,
        ).message()  # fmt: skip

    # -- phases --------------------------------------------------------------------------------
    def setup(self, at: float) -> list[AmiMessage]:
        """The trunk channel appears and runs priorities 1..6 up to the AGI."""
        plan = self.plan
        out = [channel_event("Newchannel", self.inbound)]
        if plan.caller is not None:
            name = "Anonymous" if plan.caller == ANONYMOUS else UNKNOWN
            self.inbound = replace(self.inbound, caller_num=plan.caller, caller_name=name)
            out.append(channel_event("NewCallerid", self.inbound, CALLING_PRES))
        out.append(self._cel(self.inbound, "CHAN_START", at))
        number = plan.caller or ""
        out += [
            self._exten(
                1, "NoOp", f"Inbound call to DID {plan.did} from {caller_all(plan.caller)}"
            ),
            *self._did_variable(),
            self._exten(3, "Set", f"__CT_CALLER={number}"),
            self._set("__CT_CALLER", number),
            self._exten(4, "Set", f"CDR(userfield)=did={plan.did}"),
            self._exten(5, "Set", f"CT_START={int(at)}"),
            self._set("CT_START", str(int(at))),
            self._exten(6, "AGI", plan.agi_app_data),
            self._cel(self.inbound, "APP_START", at, CelApp("AGI", plan.agi_app_data)),
        ]
        self.userfield = f"did={plan.did}"
        return out

    def _did_variable(self) -> list[AmiMessage]:
        """Priority 2: the captures' `__CT_DID`, or the shipped dialplan's CALLTRACKING_DID."""
        did = self.plan.did
        name = "CALLTRACKING_DID" if self.plan.route_context else "__CT_DID"
        return [self._exten(2, "Set", f"{name}={did}"), self._set(name, did)]

    def _move_on(self) -> list[AmiMessage]:
        """The shipped dialplan's `Goto(calltracking-default-route,...)`, then on to the route
        context, where the Dial runs (the channel has left the trunk context)."""
        route, default = self.plan.route_context, "calltracking-default-route"
        if not route:
            return []
        did = self.plan.did
        out = [
            self._exten(1, "NoOp", f"calltracking: default route for DID {did}", context=default),
            self._exten(2, "Goto", f"{route},s,1", context=default),
        ]
        self.context = route
        return out

    def agi_command(self, command_id: int, command: str, end: tuple[int, str] | None) -> AmiMessage:
        return agi_exec(self.inbound, command_id, command, end)

    def agi_set(self, name: str, value: str) -> AmiMessage:
        return self._set(name, value)

    def caller_gave_up(self) -> list[AmiMessage]:
        """The caller hangs up while the AGI runs (cause 19 as captured)."""
        return [channel_event("HangupRequest", self.inbound, ("Cause", "19"))]

    def agi_done(self, status: str, at: float) -> list[AmiMessage]:
        return [
            self._set("AGISTATUS", status),
            self._cel(self.inbound, "APP_END", at, CelApp("AGI", self.plan.agi_app_data)),
        ]

    def end_after_agi_hangup(self, at: float) -> list[AmiMessage]:
        """The channel died during the AGI; it goes once the script ends (no Dial, no record)."""
        return [
            self._cdr(at, "NO ANSWER", "", ("AGI", self.plan.agi_app_data)),
            channel_event("SoftHangupRequest", self.inbound, ("Cause", "16")),
            hangup(self.inbound, 19),
            *self._end_cels(at, 19, "", ""),
        ]

    def route(self, at: float, record: bool) -> list[AmiMessage]:
        """Priorities 7..15 after the AGI: caller name, MixMonitor, Gosub, Dial, operator leg."""
        status = self.variables.get("AGISTATUS", "")
        source = self.variables.get("CALLTRACKING_SOURCE", "")
        label = self.variables.get("CALLTRACKING_LABEL", "") or source
        out = [self._exten(7, "NoOp", f"AGISTATUS={status} CALLTRACKING_SOURCE={source}")]
        if status != "SUCCESS":
            out += [
                self._exten(8, "GotoIf", "1?agi_failed"),
                self._exten(18, "NoOp", f"Call tracking AGI failed (AGISTATUS={status}), "
                            "continuing without source"),
                self._exten(19, "Goto", "record"),
            ]  # fmt: skip
        elif not label:
            out += [self._exten(8, "GotoIf", "0?agi_failed"), self._exten(9, "GotoIf", "1?record")]
        else:
            out += [self._exten(8, "GotoIf", "0?agi_failed"), self._exten(9, "GotoIf", "0?record")]
            out.append(self._exten(10, "Set", f"CALLERID(name)={label}"))
            self.inbound = replace(self.inbound, caller_name=label)
            out.append(channel_event("NewCallerid", self.inbound, CALLING_PRES))
            out.append(self._exten(11, "Set", f"CDR(ct_source)={source}"))
            self.cdr_source = source
        if record:
            out += self._mixmonitor(at)
        return out + self._dial(at)

    def _mixmonitor(self, at: float) -> list[AmiMessage]:
        path = self.plan.recording_path
        out = [
            self._exten(12, "MixMonitor", path),
            self._cel(self.inbound, "APP_START", at, CelApp("MixMonitor", path)),
            self._set("MIXMONITOR_FILENAME", path),
            channel_event("MixMonitorStart", self.inbound),
            self._cel(self.inbound, "APP_END", at, CelApp("MixMonitor", path)),
        ]
        self.recording_file = f"{self.plan.uniqueid}.wav"
        return [*out, self._exten(13, "Set", f"CDR(recordingfile)={self.recording_file}")]

    def _dial(self, at: float) -> list[AmiMessage]:
        plan = self.plan
        route = self.variables.get("CALLTRACKING_ROUTE", "")
        target = route.split("@", 1)[0] if route else plan.operator
        self.dial_data = f"PJSIP/{target},{plan.dial_timeout_s}"
        out = [
            *self._move_on(),
            self._exten(14, "Gosub", f"did-targets,{plan.did},1"),
            self._set("LOCAL(ARGC)", "0"),
            self._exten(1, "Return", target, context="did-targets"),
            self._set("ARGC", ""),
            self._set("GOSUB_RETVAL", target),
            self._exten(15, "Dial", self.dial_data),
            self._cel(self.inbound, "APP_START", at, CelApp("Dial", self.dial_data)),
        ]
        out += [self._set(name, "") for name in DIAL_VARIABLES]
        op = Snapshot(
            channel=f"PJSIP/{target}-{plan.operator_suffix}", state=0, context="operators",
            exten=target, priority=1, uniqueid=plan.operator_uniqueid, linkedid=plan.uniqueid,
        )  # fmt: skip
        out += [
            channel_event("Newchannel", op),
            self._cel(op, "CHAN_START", at),
            varset(op, "DIALEDPEERNUMBER", target),
            varset(op, "__CT_CALLER", plan.caller or ""),
            varset(op, "__CT_DID", plan.did),
        ]
        # Dial sets the callee's caller id to the DID and its connected line to the caller.
        op = replace(
            op, exten=plan.did, caller_num=plan.did, connected_num=self.inbound.caller_num,
            connected_name=self.inbound.caller_name,
        )  # fmt: skip
        self.operator = op
        out += [
            newexten(op, "AppDial", "(Outgoing Line)"),
            channel_event("NewCallerid", op, CALLING_PRES),
            channel_event("NewConnectedLine", op),
            dial_event("DialBegin", self.inbound, op, ("DialString", target)),
        ]
        return out

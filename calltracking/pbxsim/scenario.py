"""What the Dial of one inbound call comes to, phase by phase (pure: no I/O, no clock): ringing,
the answer and the bridge, either side hanging up, or a failed dial (no answer, busy, congestion).

Modelled on the same captures as `call_setup` (whose docstring lists the deliberate differences),
kept exactly as captured: the Dial VarSets, DialState/DialEnd, Bridge*, BRIDGEPEER,
HangupRequest/SoftHangupRequest/Hangup and their causes, two Cdr for a failed Dial (the Dial
segment's disposition in FAILED_DIAL), and the CEL names. Each method returns the events of one
phase; the driver (`calls.py`) paces them in time.
"""

from __future__ import annotations

from dataclasses import replace

from calltracking.pbxsim.call_plan import Outcome
from calltracking.pbxsim.call_setup import CallSetup
from calltracking.pbxsim.messages import AmiMessage
from calltracking.pbxsim.snapshots import (
    CelApp,
    bridge_event,
    bridge_extra,
    channel_event,
    dial_event,
    hangup,
    hangup_extra,
    varset,
)

# Failed dials: (DIALSTATUS, the operator leg's hangup cause, the Dial segment's Cdr disposition)
FAILED_DIAL = {
    Outcome.MISSED: ("NOANSWER", 0, "NO ANSWER"),
    Outcome.BUSY: ("BUSY", 17, "BUSY"),
    Outcome.FAILED: ("CONGESTION", 34, "CONGESTION"),
}


class CallScenario(CallSetup):
    """One call's channels and variables, advanced phase by phase to its end."""

    def ringing(self) -> list[AmiMessage]:
        self.operator = replace(self._op(), state=5)
        return [
            channel_event("Newstate", self.operator),
            self._set("RINGTIME", "0"),
            self._set("RINGTIME_MS", "0"),
            dial_event("DialState", self.inbound, self.operator, ("DialStatus", "RINGING")),
        ]

    def answer(self, at: float) -> list[AmiMessage]:
        self.answered_at = at
        op = replace(self._op(), state=6)
        target = self.variables.get("GOSUB_RETVAL", self.plan.operator)
        out = [
            channel_event("Newstate", op),
            self._set("DIALSTATUS", "ANSWER"),
            self._set("DIALEDPEERNAME", op.channel),
            self._set("DIALEDPEERNUMBER", target),
            dial_event("DialEnd", self.inbound, replace(op, exten=""), ("DialStatus", "ANSWER")),
        ]
        op = replace(op, exten="")
        self.operator = op
        self.inbound = replace(self.inbound, state=6)
        bid = self.plan.bridge_id
        dial = CelApp("Dial", self.dial_data)
        out += [
            channel_event("Newstate", self.inbound),
            bridge_event("BridgeCreate", bid, 0, None),
            self._cel(op, "ANSWER", at, CelApp("AppDial", "(Outgoing Line)")),
            self._cel(self.inbound, "ANSWER", at, dial),
            bridge_event("BridgeEnter", bid, 1, op),
            self._cel(op, "BRIDGE_ENTER", at, CelApp("AppDial", "(Outgoing Line)",
                                                      self.inbound.channel, bridge_extra(bid))),
            self._cel(self.inbound, "BRIDGE_ENTER", at,
                      CelApp(dial.app, dial.data, op.channel, bridge_extra(bid))),
            bridge_event("BridgeEnter", bid, 2, self.inbound),
            varset(op, "BRIDGEPEER", self.inbound.channel),
            self._set("BRIDGEPEER", op.channel),
        ]  # fmt: skip
        return out

    def _talk_vars(self, at: float) -> list[AmiMessage]:
        answered = self.answered_at if self.answered_at is not None else at
        talk_ms = int((at - answered) * 1000)
        dialed_ms = int((at - self.started_at) * 1000)
        return [
            self._set("ANSWEREDTIME", str(talk_ms // 1000)),
            self._set("ANSWEREDTIME_MS", str(talk_ms)),
            self._set("DIALEDTIME", str(dialed_ms // 1000)),
            self._set("DIALEDTIME_MS", str(dialed_ms)),
            self._set("DIALSTATUS", "ANSWER"),
        ]

    def operator_hangs_up(self, at: float) -> list[AmiMessage]:
        op = self._op()
        bid = self.plan.bridge_id
        dial = CelApp("Dial", self.dial_data)
        app_dial = CelApp("AppDial", "(Outgoing Line)")
        out = [
            channel_event("HangupRequest", op, ("Cause", "16")),
            varset(op, "BRIDGEPEER", ""),
            self._cel(op, "BRIDGE_EXIT", at, CelApp(app_dial.app, app_dial.data, "",
                                                     bridge_extra(bid))),
            bridge_event("BridgeLeave", bid, 1, op),
            hangup(op, 16),
            self._cel(op, "HANGUP", at, CelApp(app_dial.app, app_dial.data, "",
                                                hangup_extra(16, "", "ANSWER"))),
            self._cel(op, "CHAN_END", at, app_dial),
            self._set("BRIDGEPEER", ""),
            bridge_event("BridgeLeave", bid, 0, self.inbound),
            bridge_event("BridgeDestroy", bid, 0, None),
            *self._talk_vars(at),
            channel_event("SoftHangupRequest", self.inbound, ("Cause", "16")),
            self._cel(self.inbound, "BRIDGE_EXIT", at, CelApp(dial.app, dial.data, "",
                                                               bridge_extra(bid))),
            hangup(self.inbound, 16),
            self._cel(self.inbound, "APP_END", at, dial),
            self._cdr(at, "ANSWERED", op.channel, ("Dial", self.dial_data)),
            *self._end_cels(at, 16, "", "ANSWER"),
        ]  # fmt: skip
        return out

    def caller_hangs_up(self, at: float) -> list[AmiMessage]:
        op = self._op()
        bid = self.plan.bridge_id
        dial = CelApp("Dial", self.dial_data)
        app_dial = CelApp("AppDial", "(Outgoing Line)")
        return [
            channel_event("HangupRequest", self.inbound, ("Cause", "16")),
            self._set("BRIDGEPEER", ""),
            self._cel(self.inbound, "BRIDGE_EXIT", at, CelApp(dial.app, dial.data, "",
                                                               bridge_extra(bid))),
            bridge_event("BridgeLeave", bid, 1, self.inbound),
            *self._talk_vars(at),
            channel_event("SoftHangupRequest", op, ("Cause", "16")),
            varset(op, "BRIDGEPEER", ""),
            bridge_event("BridgeLeave", bid, 0, op),
            bridge_event("BridgeDestroy", bid, 0, None),
            hangup(op, 16),
            self._cel(op, "HANGUP", at, CelApp(app_dial.app, app_dial.data, "",
                                                hangup_extra(16, "", "ANSWER"))),
            self._cel(op, "CHAN_END", at, app_dial),
            hangup(self.inbound, 16),
            self._cel(self.inbound, "APP_END", at, dial),
            self._cdr(at, "ANSWERED", op.channel, ("Dial", self.dial_data)),
            *self._end_cels(at, 16, "", "ANSWER"),
        ]  # fmt: skip

    def dial_failed(self, outcome: Outcome, at: float) -> list[AmiMessage]:
        """No answer (Dial timeout), busy or congestion; the dialplan then runs 16 and 17."""
        status, op_cause, disposition = FAILED_DIAL[outcome]
        op = self._op()
        out: list[AmiMessage] = []
        if outcome is Outcome.BUSY:
            op = replace(op, state=7)
            out.append(channel_event("Newstate", op))
        out += [
            dial_event("DialEnd", self.inbound, op, ("DialStatus", status)),
            hangup(op, op_cause),
            self._cel(op, "HANGUP", at, CelApp("AppDial", "(Outgoing Line)", "",
                                                hangup_extra(op_cause, "", ""))),
            self._cel(op, "CHAN_END", at, CelApp("AppDial", "(Outgoing Line)")),
            self._set("DIALSTATUS", status),
            self._exten(16, "NoOp", f"DIALSTATUS={status}"),
            self._exten(17, "Hangup", ""),
            channel_event("SoftHangupRequest", self.inbound, ("Cause", "16")),
            hangup(self.inbound, 16),
            self._cel(self.inbound, "APP_END", at, CelApp("Dial", self.dial_data)),
            *self._end_cels(at, 16, "dialplan/builtin", status),
            self._cdr(at, disposition, op.channel, ("Dial", self.dial_data)),
            self._cdr(at, "NO ANSWER", "", ("Hangup", "")),
        ]  # fmt: skip
        self.operator = op
        return out

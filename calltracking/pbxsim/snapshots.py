"""Channel snapshots and the event shapes Asterisk 22 builds from them.

Rules (from `fixtures/asterisk/ami_*.txt`):
- Every channel event carries the same 14 snapshot headers, `Channel` .. `Linkedid`, in this order;
  `Dial*` events repeat them for the callee with a `Dest` prefix.
- Channel events spell `Uniqueid`/`Linkedid`; CEL spells `UniqueID`/`LinkedID`; Cdr has `UniqueID`
  and no Linkedid (stock cdr_manager) plus the two mapped headers `RecordingFile` and
  `CallTrackingSource` of the fixtures' cdr_manager.conf.
- `<unknown>` is a literal placeholder in snapshots; CEL writes an empty string instead.
- CEL and Cdr times are wall-clock strings (`2026-11-25 07:41:56`); this module takes them as
  epoch floats and formats them in UTC, like the capture machine.
Pure: no I/O, no clock; times are parameters.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from calltracking.pbxsim.messages import AmiMessage, event

UNKNOWN = "<unknown>"
STATE_DESC = {0: "Down", 4: "Ring", 5: "Ringing", 6: "Up", 7: "Busy"}
CAUSE_TEXT = {
    0: "Unknown",
    16: "Normal Clearing",
    17: "User busy",
    19: "User alerting, no answer",
    34: "Circuit/channel congestion",
}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What Asterisk knows of one channel at one moment."""

    channel: str
    state: int
    context: str
    exten: str
    priority: int
    uniqueid: str
    linkedid: str
    caller_num: str = UNKNOWN
    caller_name: str = UNKNOWN
    connected_num: str = UNKNOWN
    connected_name: str = UNKNOWN

    def headers(self, prefix: str = "") -> list[tuple[str, str]]:
        return [
            (f"{prefix}Channel", self.channel),
            (f"{prefix}ChannelState", str(self.state)),
            (f"{prefix}ChannelStateDesc", STATE_DESC.get(self.state, "Unknown")),
            (f"{prefix}CallerIDNum", self.caller_num),
            (f"{prefix}CallerIDName", self.caller_name),
            (f"{prefix}ConnectedLineNum", self.connected_num),
            (f"{prefix}ConnectedLineName", self.connected_name),
            (f"{prefix}Language", "en"),
            (f"{prefix}AccountCode", ""),
            (f"{prefix}Context", self.context),
            (f"{prefix}Exten", self.exten),
            (f"{prefix}Priority", str(self.priority)),
            (f"{prefix}Uniqueid", self.uniqueid),
            (f"{prefix}Linkedid", self.linkedid),
        ]


def wall(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))


def _blank(value: str) -> str:
    return "" if value == UNKNOWN else value


def channel_event(name: str, snap: Snapshot, *extra: tuple[str, str]) -> AmiMessage:
    return event(name, "call,all", snap.headers(), list(extra))


def newexten(snap: Snapshot, app: str, data: str) -> AmiMessage:
    extra = [("Extension", snap.exten), ("Application", app), ("AppData", data)]
    return event("Newexten", "dialplan,all", snap.headers(), extra)


def varset(snap: Snapshot, name: str, value: str) -> AmiMessage:
    return event("VarSet", "dialplan,all", snap.headers(), [("Variable", name), ("Value", value)])


def agi_exec(
    snap: Snapshot, command_id: int, command: str, end: tuple[int, str] | None
) -> AmiMessage:
    extra = [("CommandId", str(command_id)), ("Command", command)]
    if end is None:
        return event("AGIExecStart", "agi,all", snap.headers(), extra)
    extra += [("ResultCode", str(end[0])), ("Result", end[1])]
    return event("AGIExecEnd", "agi,all", snap.headers(), extra)


def hangup(snap: Snapshot, cause: int) -> AmiMessage:
    return channel_event(
        "Hangup", snap, ("Cause", str(cause)), ("Cause-txt", CAUSE_TEXT.get(cause, "Unknown"))
    )


def dial_event(name: str, caller: Snapshot, callee: Snapshot, last: tuple[str, str]) -> AmiMessage:
    """DialBegin (last = DialString), DialState or DialEnd (last = DialStatus)."""
    return event(name, "call,all", caller.headers(), callee.headers("Dest"), [last])


def bridge_headers(bridge_id: str, count: int) -> list[tuple[str, str]]:
    return [
        ("BridgeUniqueid", bridge_id),
        ("BridgeType", "basic"),
        ("BridgeTechnology", "simple_bridge"),
        ("BridgeCreator", UNKNOWN),
        ("BridgeName", UNKNOWN),
        ("BridgeNumChannels", str(count)),
        ("BridgeVideoSourceMode", "none"),
    ]


def bridge_event(name: str, bridge_id: str, count: int, snap: Snapshot | None) -> AmiMessage:
    parts = [bridge_headers(bridge_id, count)]
    if snap is not None:
        parts.append(snap.headers())
    return event(name, "call,all", *parts)


@dataclass(frozen=True, slots=True)
class CelApp:
    """The application a CEL record names, with the optional peer and JSON extra."""

    app: str = ""
    data: str = ""
    peer: str = ""
    extra: str = ""


def cel(snap: Snapshot, name: str, at: float, app: CelApp | None = None) -> AmiMessage:
    app = app or CelApp()
    return event(
        "CEL",
        "call,all",
        [
            ("EventName", name),
            ("AccountCode", ""),
            ("CallerIDnum", _blank(snap.caller_num)),
            ("CallerIDname", _blank(snap.caller_name)),
            ("CallerIDani", ""),
            ("CallerIDrdnis", ""),
            ("CallerIDdnid", ""),
            ("Exten", snap.exten),
            ("Context", snap.context),
            ("Channel", snap.channel),
            ("Application", app.app),
            ("AppData", app.data),
            ("EventTime", wall(at)),
            ("AMAFlags", "DOCUMENTATION"),
            ("UniqueID", snap.uniqueid),
            ("LinkedID", snap.linkedid),
            ("Userfield", ""),
            ("Peer", app.peer),
            ("PeerAccount", ""),
            ("Extra", app.extra),
        ],
    )


def hangup_extra(cause: int, source: str, dial_status: str) -> str:
    return f'{{"hangupcause":{cause},"hangupsource":"{source}","dialstatus":"{dial_status}"}}'


def bridge_extra(bridge_id: str) -> str:
    return f'{{"bridge_id":"{bridge_id}","bridge_technology":"simple_bridge"}}'


@dataclass(frozen=True, slots=True)
class CdrRecord:
    """One CDR segment as cdr_manager posts it."""

    snap: Snapshot
    destination_channel: str
    last_app: str
    last_data: str
    start: float
    answer: float | None
    end: float
    disposition: str
    userfield: str
    recording_file: str
    source: str

    def message(self) -> AmiMessage:
        num = _blank(self.snap.caller_num)
        name = _blank(self.snap.caller_name)
        return event(
            "Cdr",
            "cdr,all",
            [
                ("AccountCode", ""),
                ("Source", num),
                ("Destination", self.snap.exten),
                ("DestinationContext", self.snap.context),
                ("CallerID", f'"{name}" <{num}>'),
                ("Channel", self.snap.channel),
                ("DestinationChannel", self.destination_channel),
                ("LastApplication", self.last_app),
                ("LastData", self.last_data),
                ("StartTime", wall(self.start)),
                ("AnswerTime", "" if self.answer is None else wall(self.answer)),
                ("EndTime", wall(self.end)),
                ("Duration", str(int(self.end - self.start))),
                (
                    "BillableSeconds",
                    "0" if self.answer is None else str(int(self.end - self.answer)),
                ),
                ("Disposition", self.disposition),
                ("AMAFlags", "DOCUMENTATION"),
                ("UniqueID", self.snap.uniqueid),
                ("UserField", self.userfield),
                ("RecordingFile", self.recording_file),
                ("CallTrackingSource", self.source),
            ],
        )

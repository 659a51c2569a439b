"""AMI events in, call facts out: the pure state machine behind the AMI listener (no I/O, no clock).

Events are plain mappings with Asterisk's header names, looked up without case. `now` is when the
adapter received the event. Rules, checked against the Asterisk 22 transcripts in
`fixtures/asterisk` (see tests/ami/test_callflow.py):

  a call         one Linkedid of this PBX: `CallKey(pbx_id, Linkedid)`.
  trunk channel  a channel seen in one of `trunk_contexts`; the first one (Newchannel or Newexten in
                 a trunk context) opens the call. Events of Linkedids never opened are ignored.
  start          an opened call is *pending* until the first of: a Newexten of a trunk channel
                 running an application that acts on the call (anything but Set, NoOp, Goto,
                 Gosub, AppDial...), a Newstate Up of a trunk channel, a Dial*/Bridge*/Hangup* event
                 of the call, another channel joining the call, or `settle_s` (`expire`). Waiting
                 lets the dialplan set CALLTRACKING_DID and lets a caller id set just after
                 Newchannel (Originate, some trunks) arrive. Then CallStarted, once, with `at` =
                 when the call was first seen.
  DID            CALLTRACKING_DID (any `_` prefix) set on the call's channels, else the Exten the
                 first trunk channel had in the trunk context; normalised. Not a number (`s`, an
                 extension) -> CallIgnored and nothing else for that Linkedid.
  caller         the last CallerIDNum of a trunk channel before the start that is not withheld;
                 operator legs never count (their CallerIDNum is the DID). Withheld -> None.
  answered       DialEnd ANSWER (with a Channel header; Originate's DialBegin/DialEnd have none and
                 are ignored) towards a channel that is not a trunk channel, or a bridge holding a
                 trunk channel of the call and any other channel (a pickup may come from another
                 Linkedid). An IVR's Answer() on the inbound channel is no answer. `answered_by` is
                 that channel without its `-xxxxxxxx;n` suffix: the device, e.g. `PJSIP/101`.
  ended          every channel seen in the call has had its Hangup.
  status         answered; else the trunk channel's dial status (DialEnd, VarSet DIALSTATUS): BUSY
                 -> busy, CONGESTION/CHANUNAVAIL -> failed, any other -> missed; else the inbound
                 channel's cause: 17 -> busy, congestion-like causes -> failed; else missed (no
                 answer, caller gave up, hung up during the AGI).
  hangup_cause   the Cause of the inbound channel (the trunk channel that ran the dialplan).
  recording      VarSet MIXMONITOR_FILENAME (the first) or CALLTRACKING_RECORDING (always wins) on
                 any channel of the call, also after the end; reported after CallStarted.
  time           facts carry the event's `Timestamp` (timestampevents=yes) when it is within
                 MAX_SKEW of `now`, else `now`.
  order          facts are emitted once per call. Cdr and CEL never change state, so their order
                 against Hangup does not matter; a hung-up channel never comes back.
  reconcile      `adopt` takes a full CoreShowChannels snapshot: new calls are opened (start =
                 now - Duration), calls absent from it end `reconciled` (status from what is known,
                 else unknown); `check_open` closes the recorder's calls nothing confirms.
  memory         ended calls stay `forget_s` to absorb late events; open calls silent for
                 `stale_call_s` end as unknown, reconciled.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from calltracking.core import numbers
from calltracking.core.kinds import CallStatus
from calltracking.core.records import CallKey, OpenCall

MAX_SKEW = timedelta(minutes=5)
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
# Events that never say a channel is alive (CEL/Cdr also name hung-up channels).
_NOT_CHANNEL_EVENTS = frozenset(
    {"cdr", "cel", "coreshowchannel", "coreshowchannelscomplete", "originateresponse"}
)
_SETTLING_EVENTS = frozenset(
    {"dialbegin", "dialend", "bridgeenter", "hangup", "hanguprequest", "softhanguprequest"}
)
_BUSY_CAUSE = 17
# Q.850: no circuit, network out of order, temporary failure, congestion, not available.
_FAILED_CAUSES = frozenset({34, 38, 41, 42, 44, 47})
_DEVICE = re.compile(r"^(?P<device>.+?)-[0-9a-fA-F]{8}(?:;\d+)?$")
_MAX_BRIDGES = 10_000


@dataclass(frozen=True, slots=True)
class CallStarted:
    key: CallKey
    did: str
    caller: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class CallAnswered:
    key: CallKey
    at: datetime
    answered_by: str | None


@dataclass(frozen=True, slots=True)
class CallEnded:
    key: CallKey
    at: datetime
    status: CallStatus
    hangup_cause: int | None
    reconciled: bool = False


@dataclass(frozen=True, slots=True)
class RecordingNamed:
    key: CallKey
    asterisk_path: str


@dataclass(frozen=True, slots=True)
class CallIgnored:
    """A trunk call whose DID is not a number: not an inbound tracked call (log at debug)."""

    key: CallKey
    raw_did: str


Fact = CallStarted | CallAnswered | CallEnded | RecordingNamed | CallIgnored


@dataclass(slots=True)
class _Call:
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


class CallFlow:
    """Follows the calls of one Asterisk; `feed`, `expire`, `adopt`, `check_open` return facts."""

    def __init__(
        self,
        pbx_id: str,
        trunk_contexts: Collection[str],
        country_code: str,
        *,
        settle_s: float = 3.0,
        stale_call_s: float = 14_400.0,
        forget_s: float = 3_600.0,
    ) -> None:
        self.pbx_id = pbx_id
        self._trunk_contexts = frozenset(trunk_contexts)
        self._country_code = country_code
        self._settle = timedelta(seconds=settle_s)
        self._stale = timedelta(seconds=stale_call_s)
        self._forget = timedelta(seconds=forget_s)
        self._calls: dict[str, _Call] = {}
        self._trunk_uids: dict[str, str] = {}  # trunk channel uniqueid -> linkedid
        self._bridges: dict[str, dict[str, str]] = {}  # bridge id -> uniqueid -> channel

    # -- queries ---------------------------------------------------------------------------
    def open_keys(self) -> list[CallKey]:
        return [c.key for c in self._calls.values() if c.ended is None and not c.ignored]

    def __len__(self) -> int:
        return len(self._calls)

    # -- events ----------------------------------------------------------------------------
    def feed(self, event: Mapping[str, str], now: datetime) -> list[Fact]:
        ev = _normalised(event)
        name = ev.get("event", "").lower()
        uid, linkedid = ev.get("uniqueid", ""), ev.get("linkedid", "")
        if not name or name in _NOT_CHANNEL_EVENTS or not uid or not linkedid:
            return []
        at = _event_time(ev, now)
        out: list[Fact] = []
        channel = ev.get("channel", "")
        if name in ("bridgeenter", "bridgeleave", "bridgedestroy"):
            out += self._bridge(name, ev.get("bridgeuniqueid", ""), uid, channel, at)
        call = self._calls.get(linkedid)
        in_trunk = ev.get("context", "") in self._trunk_contexts
        if call is None:
            if not (in_trunk and name in ("newchannel", "newexten")):
                return out
            call = _Call(CallKey(self.pbx_id, linkedid), at, now, at, now)
            self._calls[linkedid] = call
        call.last_seen, call.last_at = now, at
        if call.ended is not None or call.ignored:
            if call.ended is not None and name == "varset":
                self._varset(call, ev)
                self._report_recording(call, out)
            if name == "hangup" and call.ignored:
                self._hangup(call, uid, ev, at, now, out)
            return out
        is_new_leg = uid not in call.live and uid not in call.gone
        self._note_channel(call, name, ev, uid, channel, in_trunk)
        if name == "varset":
            self._varset(call, ev)
        if not call.settled and self._settles(call, name, ev, uid, is_new_leg):
            self._settle_call(call, out)
        if name == "dialend":
            self._dial_end(call, ev, uid, at, out)
        elif name == "hangup":
            self._hangup(call, uid, ev, at, now, out)
        self._report_recording(call, out)
        return out

    def _note_channel(
        self, call: _Call, name: str, ev: dict[str, str], uid: str, channel: str, in_trunk: bool
    ) -> None:
        if uid not in call.gone and name != "hangup":
            call.live[uid] = channel or call.live.get(uid, "")
        if in_trunk and uid not in call.trunk and uid not in call.gone:
            call.trunk[uid] = channel
            self._trunk_uids[uid] = call.key.linkedid
            if not call.exten:
                call.exten = ev.get("exten", "")
        if uid in call.trunk:
            app = ev.get("application", "").lower()
            if name == "newexten" and app not in ("appdial", "appdial2") and call.inbound is None:
                call.inbound = uid
            if not call.settled:
                raw = ev.get("calleridnum", "")
                if raw and not numbers.is_withheld(raw):
                    call.caller = raw

    def _settles(self, call: _Call, name: str, ev: dict[str, str], uid: str, new: bool) -> bool:
        if name in _SETTLING_EVENTS:
            return True
        if uid not in call.trunk:
            return new  # an operator leg joined: the dialplan is routing the call
        if name == "newexten":
            return ev.get("application", "").lower() not in PASSIVE_APPS
        return name == "newstate" and ev.get("channelstate", "") == "6"

    def _varset(self, call: _Call, ev: dict[str, str]) -> None:
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

    def _dial_end(
        self, call: _Call, ev: dict[str, str], uid: str, at: datetime, out: list[Fact]
    ) -> None:
        if not ev.get("channel"):
            return
        status = ev.get("dialstatus", "").upper()
        dest = ev.get("destchannel", "")
        dest_is_trunk = ev.get("destuniqueid", "") in call.trunk or dest in call.trunk.values()
        if status == "ANSWER":
            if dest and not dest_is_trunk:
                if uid in call.trunk:
                    call.dial_status = status
                self._answer(call, at, dest, out)
        elif status and uid in call.trunk:
            call.dial_status = status

    def _answer(self, call: _Call, at: datetime, channel: str, out: list[Fact]) -> None:
        if call.answered or call.ended is not None:
            return
        if not call.settled:
            self._settle_call(call, out)
        if call.ignored:
            return
        call.answered = True
        out.append(CallAnswered(call.key, at, device(channel)))

    def _bridge(self, name: str, bridge: str, uid: str, channel: str, at: datetime) -> list[Fact]:
        if not bridge:
            return []
        if name == "bridgedestroy":
            self._bridges.pop(bridge, None)
            return []
        members = self._bridges.get(bridge)
        if name == "bridgeleave":
            if members is not None:
                members.pop(uid, None)
                if not members:
                    del self._bridges[bridge]
            return []
        if members is None:
            if len(self._bridges) >= _MAX_BRIDGES:  # leaked bridges (missed BridgeDestroy)
                self._bridges.pop(next(iter(self._bridges)))
            members = self._bridges[bridge] = {}
        members[uid] = channel
        return self._check_bridge(members, at, prefer=uid)

    def _check_bridge(self, members: Mapping[str, str], at: datetime, prefer: str) -> list[Fact]:
        out: list[Fact] = []
        for linkedid in {self._trunk_uids[u] for u in members if u in self._trunk_uids}:
            call = self._calls.get(linkedid)
            if call is None or call.answered or call.ended is not None:
                continue
            others = [u for u in members if u not in call.trunk]
            if others:
                chosen = prefer if prefer in others else others[0]
                self._answer(call, at, members[chosen], out)
        return out

    def _hangup(
        self,
        call: _Call,
        uid: str,
        ev: dict[str, str],
        at: datetime,
        now: datetime,
        out: list[Fact],
    ) -> None:
        call.live.pop(uid, None)
        call.gone.add(uid)
        call.causes[uid] = _int(ev.get("cause", ""))
        for members in self._bridges.values():
            members.pop(uid, None)
        if call.live:
            return
        if call.ignored:
            call.ended_seen = now
            return
        self._end(call, at, now, reconciled=False, out=out)

    # -- outcomes --------------------------------------------------------------------------
    def _settle_call(self, call: _Call, out: list[Fact]) -> None:
        call.settled = True
        raw = call.did_var or call.exten
        did = numbers.normalise(raw, self._country_code) if raw else None
        if did is None:
            call.ignored = True
            out.append(CallIgnored(call.key, raw))
            return
        caller = None
        if call.caller and not numbers.is_withheld(call.caller):
            caller = numbers.normalise(call.caller, self._country_code)
        out.append(CallStarted(call.key, did, caller, call.first_at))

    def _report_recording(self, call: _Call, out: list[Fact]) -> None:
        if call.settled and not call.ignored and call.recording != call.recording_reported:
            call.recording_reported = call.recording
            out.append(RecordingNamed(call.key, call.recording))

    def _outcome(self, call: _Call, reconciled: bool) -> tuple[CallStatus, int | None]:
        first_trunk = next(iter(call.trunk), None)
        cause = call.causes.get(call.inbound or first_trunk or "")
        if call.answered:
            return CallStatus.ANSWERED, cause
        dial = call.dial_status
        if dial == "BUSY":
            return CallStatus.BUSY, cause
        if dial in ("CONGESTION", "CHANUNAVAIL"):
            return CallStatus.FAILED, cause
        if cause == _BUSY_CAUSE:
            return CallStatus.BUSY, cause
        if cause in _FAILED_CAUSES:
            return CallStatus.FAILED, cause
        if reconciled and not dial and cause is None:
            return CallStatus.UNKNOWN, None  # vanished while we were not looking
        return CallStatus.MISSED, cause

    def _end(
        self,
        call: _Call,
        at: datetime,
        now: datetime,
        *,
        reconciled: bool,
        out: list[Fact],
        status: CallStatus | None = None,
    ) -> None:
        if not call.settled:
            self._settle_call(call, out)
        call.ended_seen = now
        if call.ignored:
            return
        if call.dial_status == "ANSWER" and not call.answered and status is None:
            self._answer(call, at, "", out)  # DIALSTATUS said so though no DialEnd/bridge was seen
        known, cause = self._outcome(call, reconciled)
        call.ended = CallEnded(call.key, at, status or known, cause, reconciled)
        out.append(call.ended)
        self._report_recording(call, out)
        for uid in call.trunk:
            self._trunk_uids.pop(uid, None)
        call.live.clear()

    # -- time ------------------------------------------------------------------------------
    def expire(self, now: datetime) -> list[Fact]:
        """Settle pending calls, end stale ones as unknown, forget old ended ones."""
        out: list[Fact] = []
        for linkedid, call in list(self._calls.items()):
            if call.ended_seen is not None:
                if now - call.ended_seen >= self._forget:
                    self._forget_call(linkedid)
            elif now - call.last_seen >= self._stale:
                if call.ignored:
                    self._forget_call(linkedid)
                else:
                    self._end(call, now, now, reconciled=True, out=out, status=CallStatus.UNKNOWN)
            elif not call.settled and now - call.seen_at >= self._settle:
                self._settle_call(call, out)
                self._report_recording(call, out)
        return out

    def _forget_call(self, linkedid: str) -> None:
        call = self._calls.pop(linkedid)
        for uid in call.trunk:
            if self._trunk_uids.get(uid) == linkedid:
                del self._trunk_uids[uid]

    # -- reconcile -------------------------------------------------------------------------
    def adopt(
        self,
        channels: Iterable[Mapping[str, str]],
        now: datetime,
        *,
        requested_at: datetime | None = None,
        open_calls: Collection[OpenCall] = (),
    ) -> list[Fact]:
        """Reconcile with a full CoreShowChannels snapshot requested at `requested_at`.

        Calls that had events since the request are left alone: the snapshot may predate them.
        """
        groups: dict[str, list[dict[str, str]]] = {}
        for raw in channels:
            ev = _normalised(raw)
            if ev.get("linkedid") and ev.get("uniqueid"):
                groups.setdefault(ev["linkedid"], []).append(ev)
        known = {c.key.linkedid: c for c in open_calls if c.key.pbx_id == self.pbx_id}
        out: list[Fact] = []
        for linkedid, chans in groups.items():
            call = self._calls.get(linkedid)
            if call is None:
                call = self._open_from_snapshot(linkedid, chans, now, known.get(linkedid), out)
            elif call.ended is None:
                call.last_seen = now
                for ch in chans:
                    self._note_snapshot_channel(call, ch)
            if call is not None and call.ended is None and not call.ignored:
                self._answer_from_snapshot(call, chans, now, out)
        cutoff = requested_at or now
        for call in list(self._calls.values()):
            if call.key.linkedid in groups or call.ended_seen is not None:
                continue
            if call.last_seen < cutoff:
                self._end(call, call.last_at, now, reconciled=True, out=out)
        ended_now = {f.key for f in out if isinstance(f, CallEnded)}
        opened = [c for c in known.values() if c.key not in ended_now]
        out += self._close_unconfirmed(opened, groups, now, cutoff)
        return out

    def _open_from_snapshot(
        self,
        linkedid: str,
        chans: list[dict[str, str]],
        now: datetime,
        opened: OpenCall | None,
        out: list[Fact],
    ) -> _Call | None:
        trunk = [c for c in chans if c.get("context", "") in self._trunk_contexts]
        if not trunk and opened is None:
            return None
        age = max((_duration(c.get("duration", "")) for c in chans), default=timedelta())
        started = opened.started_at if opened is not None else now - age
        call = _Call(CallKey(self.pbx_id, linkedid), started, now, now, now)
        self._calls[linkedid] = call
        # The Linkedid is the Uniqueid of the call's first channel: for a trunk call, the inbound
        # one, even when it has left the trunk context by now.
        owner = [c for c in chans if c["uniqueid"] == linkedid]
        for ch in owner + trunk:
            call.trunk[ch["uniqueid"]] = ch.get("channel", "")
            self._trunk_uids[ch["uniqueid"]] = linkedid
        for ch in chans:
            self._note_snapshot_channel(call, ch)
        first = (owner + trunk)[0]
        call.exten = first.get("exten", "") if first in trunk else ""
        callers = [c.get("calleridnum", "") for c in owner + trunk]
        call.caller = next((c for c in callers if c and not numbers.is_withheld(c)), "")
        if opened is not None:
            call.settled = True  # the recorder has it already
            call.answered = opened.answered_at is not None
        else:
            self._settle_call(call, out)
        return call

    def _note_snapshot_channel(self, call: _Call, ch: dict[str, str]) -> None:
        uid = ch["uniqueid"]
        if uid not in call.gone:
            call.live[uid] = ch.get("channel", "")
        if ch.get("context", "") in self._trunk_contexts and uid not in call.trunk:
            call.trunk[uid] = ch.get("channel", "")
            self._trunk_uids[uid] = call.key.linkedid

    def _answer_from_snapshot(
        self, call: _Call, chans: list[dict[str, str]], now: datetime, out: list[Fact]
    ) -> None:
        bridges: dict[str, dict[str, str]] = {}
        for ch in chans:
            if ch.get("bridgeid"):
                bridges.setdefault(ch["bridgeid"], {})[ch["uniqueid"]] = ch.get("channel", "")
        for members in bridges.values():
            if any(u in call.trunk for u in members):
                others = [u for u in members if u not in call.trunk]
                if others:
                    self._answer(call, now, members[others[0]], out)

    def _close_unconfirmed(
        self, opened: Iterable[OpenCall], shown: Collection[str], now: datetime, cutoff: datetime
    ) -> list[Fact]:
        out: list[Fact] = []
        for oc in opened:
            if oc.key.linkedid in shown or oc.started_at >= cutoff:
                continue
            call = self._calls.get(oc.key.linkedid)
            if call is not None and call.ended is not None:
                out.append(call.ended)  # the recorder missed our end: say it again
            elif call is None:
                status = CallStatus.ANSWERED if oc.answered_at is not None else CallStatus.UNKNOWN
                out.append(CallEnded(oc.key, now, status, None, reconciled=True))
        return out

    def check_open(self, open_calls: Collection[OpenCall], now: datetime) -> list[Fact]:
        """The recorder's open calls: repeat ends it missed; close as unknown what is stale."""
        out: list[Fact] = []
        for oc in open_calls:
            if oc.key.pbx_id != self.pbx_id:
                continue
            call = self._calls.get(oc.key.linkedid)
            if call is not None and call.ended is not None:
                out.append(call.ended)
            elif call is None and now - oc.started_at >= self._stale:
                out.append(CallEnded(oc.key, now, CallStatus.UNKNOWN, None, reconciled=True))
        return out


def device(channel: str) -> str | None:
    """The device of a channel: `PJSIP/101-0000002a` -> `PJSIP/101`, `Local/op@ops-00000001;1` ->
    `Local/op@ops`."""
    if not channel:
        return None
    match = _DEVICE.match(channel)
    return match.group("device") if match else channel


def _normalised(event: Mapping[str, object]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in event.items():
        if isinstance(value, (list, tuple)) and value:
            value = value[0]  # a repeated header (ChanVariable): the first one
        if isinstance(value, str):
            out.setdefault(str(key).lower(), value.strip())
    return out


def _event_time(ev: Mapping[str, str], now: datetime) -> datetime:
    try:
        stamp = float(ev.get("timestamp", ""))
        if not math.isfinite(stamp):
            return now
        at = datetime.fromtimestamp(stamp, UTC)
    except (ValueError, OverflowError, OSError):
        return now
    return at if abs(at - now) <= MAX_SKEW else now


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _duration(text: str) -> timedelta:
    """CoreShowChannel `Duration: HH:MM:SS` (hours may exceed 24); garbage -> 0."""
    parts = text.split(":")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts):
        return timedelta()
    hours, minutes, seconds = (int(p) for p in parts)
    return timedelta(hours=min(hours, 10_000), minutes=minutes, seconds=seconds)

"""The calls of one Asterisk followed through their live AMI events, bridges and time.

a call         one Linkedid of this PBX: `CallKey(pbx_id, Linkedid)`.
trunk channel  a channel seen in one of `trunk_contexts`; the first one (Newchannel or Newexten in
               a trunk context) opens the call. Events of Linkedids never opened are ignored.
start          a pending call (`call_state.settles`) settles at the latest `settle_s` after it
               was first seen (`expire`). Waiting lets the dialplan set CALLTRACKING_DID and lets
               a caller id set just after Newchannel (Originate, some trunks) arrive. Then
               CallStarted, once, with `at` = when the call was first seen.
DID            normalised; not a number (`s`, an extension) -> CallIgnored and nothing else for
               that Linkedid.
caller         the last CallerIDNum of a trunk channel before the start that is not withheld;
               operator legs never count (their CallerIDNum is the DID). Withheld -> None.
answered       DialEnd ANSWER (with a Channel header; Originate's DialBegin/DialEnd have none and
               are ignored) towards a channel that is not a trunk channel, or a bridge holding a
               trunk channel of the call and any other channel (a pickup may come from another
               Linkedid). An IVR's Answer() on the inbound channel is no answer.
ended          every channel seen in the call has had its Hangup.
recording      reported after CallStarted, also after the end.
order          facts are emitted once per call. Cdr and CEL never change state, so their order
               against Hangup does not matter; a hung-up channel never comes back.
memory         ended calls stay `forget_s` to absorb late events; open calls silent for
               `stale_call_s` end as unknown, reconciled.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime, timedelta

from calltracking.core import numbers
from calltracking.core.callflow.call_state import CallState, note_variable, outcome, settles
from calltracking.core.callflow.facts import (
    CallAnswered,
    CallEnded,
    CallIgnored,
    CallStarted,
    Fact,
    RecordingNamed,
)
from calltracking.core.callflow.headers import device, event_time, normalised, parse_int
from calltracking.core.kinds import CallStatus
from calltracking.core.records import CallKey

# Events that never say a channel is alive (CEL/Cdr also name hung-up channels).
_NOT_CHANNEL_EVENTS = frozenset(
    {"cdr", "cel", "coreshowchannel", "coreshowchannelscomplete", "originateresponse"}
)
_MAX_BRIDGES = 10_000


class CallTracker:
    """Follows the calls of one Asterisk through its live events; `feed` and `expire` return
    facts."""

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
        self._calls: dict[str, CallState] = {}
        self._trunk_uids: dict[str, str] = {}  # trunk channel uniqueid -> linkedid
        self._bridges: dict[str, dict[str, str]] = {}  # bridge id -> uniqueid -> channel

    # -- queries ---------------------------------------------------------------------------
    def open_keys(self) -> list[CallKey]:
        return [c.key for c in self._calls.values() if c.ended is None and not c.ignored]

    def __len__(self) -> int:
        return len(self._calls)

    # -- events ----------------------------------------------------------------------------
    def feed(self, event: Mapping[str, str], now: datetime) -> list[Fact]:
        ev = normalised(event)
        name = ev.get("event", "").lower()
        uid, linkedid = ev.get("uniqueid", ""), ev.get("linkedid", "")
        if not name or name in _NOT_CHANNEL_EVENTS or not uid or not linkedid:
            return []
        at = event_time(ev, now)
        out: list[Fact] = []
        channel = ev.get("channel", "")
        if name in ("bridgeenter", "bridgeleave", "bridgedestroy"):
            out += self._bridge(name, ev.get("bridgeuniqueid", ""), uid, channel, at)
        call = self._calls.get(linkedid)
        in_trunk = ev.get("context", "") in self._trunk_contexts
        if call is None:
            if not (in_trunk and name in ("newchannel", "newexten")):
                return out
            call = CallState(CallKey(self.pbx_id, linkedid), at, now, at, now)
            self._calls[linkedid] = call
        call.last_seen, call.last_at = now, at
        if call.ended is not None or call.ignored:
            if call.ended is not None and name == "varset":
                note_variable(call, ev)
                self._report_recording(call, out)
            if name == "hangup" and call.ignored:
                self._hangup(call, uid, ev, at, now, out)
            return out
        is_new_leg = uid not in call.live and uid not in call.gone
        self._note_channel(call, name, ev, uid, channel, in_trunk)
        if name == "varset":
            note_variable(call, ev)
        if not call.settled and settles(call, name, ev, uid, is_new_leg):
            self._settle_call(call, out)
        if name == "dialend":
            self._dial_end(call, ev, uid, at, out)
        elif name == "hangup":
            self._hangup(call, uid, ev, at, now, out)
        self._report_recording(call, out)
        return out

    def _note_channel(
        self, call: CallState, name: str, ev: dict[str, str], uid: str, channel: str, in_trunk: bool
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

    def _dial_end(
        self, call: CallState, ev: dict[str, str], uid: str, at: datetime, out: list[Fact]
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

    def _answer(self, call: CallState, at: datetime, channel: str, out: list[Fact]) -> None:
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
        call: CallState,
        uid: str,
        ev: dict[str, str],
        at: datetime,
        now: datetime,
        out: list[Fact],
    ) -> None:
        call.live.pop(uid, None)
        call.gone.add(uid)
        call.causes[uid] = parse_int(ev.get("cause", ""))
        for members in self._bridges.values():
            members.pop(uid, None)
        if call.live:
            return
        if call.ignored:
            call.ended_seen = now
            return
        self._end(call, at, now, reconciled=False, out=out)

    # -- outcomes --------------------------------------------------------------------------
    def _settle_call(self, call: CallState, out: list[Fact]) -> None:
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

    def _report_recording(self, call: CallState, out: list[Fact]) -> None:
        if call.settled and not call.ignored and call.recording != call.recording_reported:
            call.recording_reported = call.recording
            out.append(RecordingNamed(call.key, call.recording))

    def _end(
        self,
        call: CallState,
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
        known, cause = outcome(call, reconciled)
        up_until = call.last_at if reconciled else None
        call.ended = CallEnded(call.key, at, status or known, cause, reconciled, up_until)
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

"""`CallFlow`: the live tracker reconciled with what Asterisk and the recorder say is open.

reconcile      `adopt` takes a full CoreShowChannels snapshot: new inbound calls (whatever
               context they are in now, `snapshot`) are opened (start = now - Duration, or the
               recorder's start), answered when bridged, calls absent from it end `reconciled`
               (status from what is known, else unknown); calls that had events since the
               snapshot was requested are left alone, as it may predate them.
end time       `reconciled_end`: the recording's last write when it is later than the call's
               last event (the call went on while we could not see it).
variables      `adopt` takes what `Getvar` read on the channels `snapshot.channels_to_ask` names
               (CALLTRACKING_DID, CALLTRACKING_RECORDING, MIXMONITOR_FILENAME): a call adopted
               in any context learns its DID and recording (rules in `snapshot`).
recorder       `check_open` closes the recorder's calls nothing confirms once stale, and repeats
               the ends the recorder missed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timedelta

from calltracking.core import numbers
from calltracking.core.callflow.call_state import CallState, note_variable
from calltracking.core.callflow.facts import CallEnded, Fact
from calltracking.core.callflow.headers import normalised, snapshot_duration
from calltracking.core.callflow.snapshot import (
    Variables,
    answering_channel,
    inbound_uids,
    is_tracked,
    owner_and_sibling,
)
from calltracking.core.callflow.tracker import CallTracker
from calltracking.core.kinds import CallStatus
from calltracking.core.records import CallKey, OpenCall


class CallFlow(CallTracker):
    """Follows the calls of one Asterisk; `feed`, `expire`, `adopt`, `check_open` return facts."""

    def adopt(
        self,
        channels: Iterable[Mapping[str, str]],
        now: datetime,
        *,
        requested_at: datetime | None = None,
        open_calls: Collection[OpenCall] = (),
        variables: Variables | None = None,
    ) -> list[Fact]:
        """Reconcile with a full CoreShowChannels snapshot requested at `requested_at`;
        `variables` are what `Getvar` read on the channels `channels_to_ask` named.

        Calls that had events since the request are left alone: the snapshot may predate them.
        """
        variables = variables or {}
        groups: dict[str, list[dict[str, str]]] = {}
        for raw in channels:
            ev = normalised(raw)
            if ev.get("linkedid") and ev.get("uniqueid"):
                groups.setdefault(ev["linkedid"], []).append(ev)
        known = {c.key.linkedid: c for c in open_calls if c.key.pbx_id == self.pbx_id}
        out: list[Fact] = []
        for linkedid, chans in groups.items():
            call = self._calls.get(linkedid)
            if call is None:
                call = self._open_from_snapshot(
                    linkedid, chans, now, known.get(linkedid), variables, out
                )
            elif call.ended is None:
                call.last_seen = now
                for ch in chans:
                    self._note_snapshot_channel(call, ch)
                self._learn_variables(call, chans, variables)
            if call is not None and call.ended is None and not call.ignored:
                self._answer_from_snapshot(call, chans, now, out)
                self._report_recording(call, out)
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
        variables: Variables,
        out: list[Fact],
    ) -> CallState | None:
        if opened is None and not is_tracked(chans, self._trunk_contexts, variables):
            return None
        age = max((snapshot_duration(c.get("duration", "")) for c in chans), default=timedelta())
        started = opened.started_at if opened is not None else now - age
        call = CallState(CallKey(self.pbx_id, linkedid), started, now, now, now)
        self._calls[linkedid] = call
        inbound = inbound_uids(linkedid, chans, self._trunk_contexts, variables)
        by_uid = {c["uniqueid"]: c for c in chans}
        for uid in inbound:
            call.trunk[uid] = by_uid[uid].get("channel", "")
            self._trunk_uids[uid] = linkedid
        for ch in chans:
            self._note_snapshot_channel(call, ch)
        in_trunk = [c for c in chans if c.get("context", "") in self._trunk_contexts]
        call.exten = in_trunk[0].get("exten", "") if in_trunk else ""
        # The dialplan runs on the last of owner/`;2` sibling: its hangup cause is the call's.
        runs_dialplan = owner_and_sibling(linkedid, chans)
        call.inbound = runs_dialplan[-1]["uniqueid"] if runs_dialplan else None
        self._learn_variables(call, chans, variables)
        callers = [by_uid[u].get("calleridnum", "") for u in inbound]
        call.caller = next((c for c in callers if c and not numbers.is_withheld(c)), "")
        if opened is not None:
            call.settled = True  # the recorder has it already
            call.answered = opened.answered_at is not None
        else:
            self._settle_call(call, out)
        return call

    @staticmethod
    def _learn_variables(
        call: CallState, chans: list[dict[str, str]], variables: Variables
    ) -> None:
        """What Getvar read on the call's channels, as if their VarSets had been seen."""
        for ch in chans:
            for name, value in variables.get(ch["uniqueid"], {}).items():
                note_variable(call, {"variable": name, "value": value, "uniqueid": ch["uniqueid"]})

    def _note_snapshot_channel(self, call: CallState, ch: dict[str, str]) -> None:
        uid = ch["uniqueid"]
        if uid not in call.gone:
            call.live[uid] = ch.get("channel", "")
        if ch.get("context", "") in self._trunk_contexts and uid not in call.trunk:
            call.trunk[uid] = ch.get("channel", "")
            self._trunk_uids[uid] = call.key.linkedid

    def _answer_from_snapshot(
        self, call: CallState, chans: list[dict[str, str]], now: datetime, out: list[Fact]
    ) -> None:
        answering = answering_channel(chans, call.trunk)
        if answering is None:
            return
        at = max(now - snapshot_duration(answering.get("duration", "")), call.first_at)
        self._answer(call, at, answering.get("channel", ""), out)

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


def reconciled_end(fact: CallEnded, written: datetime | None) -> datetime:
    """When a reconciled call really ended, given its recording's last write (`written`).

    MixMonitor writes until the hangup, so a last write after the call's last event is the end
    (a call talking through an AMI outage keeps its talk time); one before it means recording
    stopped early, and the last event stands. With no event known (the recorder's call closed
    after a restart), the last write stands when it is earlier than the moment we noticed.
    """
    if written is None or not fact.reconciled:
        return fact.at
    if fact.up_until is None:
        return min(written, fact.at)
    return max(written, fact.up_until)

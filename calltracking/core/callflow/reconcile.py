"""`CallFlow`: the live tracker reconciled with what Asterisk and the recorder say is open.

reconcile      `adopt` takes a full CoreShowChannels snapshot: new calls are opened (start =
               now - Duration, or the recorder's start), calls absent from it end `reconciled`
               (status from what is known, else unknown); calls that had events since the
               snapshot was requested are left alone, as it may predate them.
recorder       `check_open` closes the recorder's calls nothing confirms once stale, and repeats
               the ends the recorder missed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timedelta

from calltracking.core import numbers
from calltracking.core.callflow.call_state import CallState
from calltracking.core.callflow.facts import CallEnded, Fact
from calltracking.core.callflow.headers import normalised, snapshot_duration
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
    ) -> list[Fact]:
        """Reconcile with a full CoreShowChannels snapshot requested at `requested_at`.

        Calls that had events since the request are left alone: the snapshot may predate them.
        """
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
    ) -> CallState | None:
        trunk = [c for c in chans if c.get("context", "") in self._trunk_contexts]
        if not trunk and opened is None:
            return None
        age = max((snapshot_duration(c.get("duration", "")) for c in chans), default=timedelta())
        started = opened.started_at if opened is not None else now - age
        call = CallState(CallKey(self.pbx_id, linkedid), started, now, now, now)
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

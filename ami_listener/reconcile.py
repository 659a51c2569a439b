"""Reconciling the AMI listener's view with Asterisk's and the recorder's: the snapshot asked
after each login and periodically, and what a snapshot or a sweep tick decides.

Rules:
- After each login, and every `reconcile_interval_s` while connected: `CoreShowChannels`, then
  `Getvar` of the DID and recording variables on each call's first channel (variables.py); calls
  it shows are adopted whatever context they are in (they may be calls the recorder already has),
  open calls it does not show are closed `reconciled`, at the recording's last write when that is
  later than their last event.
- The snapshot goes on the listener's one queue before Getvar runs (queue_items.py), so events
  that arrive meanwhile are applied after it; a session that dies during Getvar still
  reconciles, without the variables.
- Every `sweep_interval_s`, connected or not (a tick): pending starts settle, calls nothing
  confirmed for `stale_call_s` close as `unknown` (reconciled), also the recorder's open calls
  we never saw.
- The recorder's open calls are read for each snapshot and tick; when it fails, reconcile goes on
  without its view. Recordings Asterisk named before a restart are watched again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from ami_listener.connection import ActionFailed, AmiSession
from ami_listener.facts_sink import FactSink
from ami_listener.queue_items import Snapshot, Tick
from ami_listener.recordings import RecordingWatcher
from ami_listener.variables import read_variables
from calltracking.core.callflow.headers import normalised
from calltracking.core.callflow.reconcile import CallFlow
from calltracking.core.callflow.snapshot import channels_to_ask
from calltracking.core.records import OpenCall
from calltracking.ports import CallRecorder

log = logging.getLogger(__name__)
_MAX_ASKED = 2_000  # channels asked about per reconcile (3 Getvar each)


class Reconciler:
    def __init__(
        self,
        *,
        pbx_id: str,
        flow: CallFlow,
        sink: FactSink,
        recorder: CallRecorder,
        recordings: RecordingWatcher,
        clock: Callable[[], datetime],
        action_timeout_s: float,
    ) -> None:
        self._pbx_id = pbx_id
        self._flow = flow
        self._sink = sink
        self._recorder = recorder
        self._recordings = recordings
        self._clock = clock
        self._action_timeout_s = action_timeout_s

    async def ask(self, session: AmiSession, enqueue: Callable[[Snapshot], None]) -> None:
        """Ask Asterisk for its channels and queue the snapshot; Getvar fills in its variables."""
        requested_at = self._clock()
        try:
            replies = await session.action({"Action": "CoreShowChannels"}, self._action_timeout_s)
        except ActionFailed as exc:
            log.error("AMI CoreShowChannels refused (%s): calls cannot be reconciled", exc)
            return
        channels = [r for r in replies if r.get("Event", "").lower() == "coreshowchannel"]
        variables: asyncio.Future[dict[str, dict[str, str]]] = (
            asyncio.get_running_loop().create_future()
        )
        enqueue(Snapshot(channels, requested_at, variables))
        asked = channels_to_ask([normalised(c) for c in channels])[:_MAX_ASKED]
        found: dict[str, dict[str, str]] = {}
        try:
            found = await read_variables(session, asked, self._action_timeout_s)
        finally:
            variables.set_result(found)  # also when the session died: reconcile without them
        log.info("AMI reconcile: %d channels up, variables read on %d", len(channels), len(found))

    async def handle(self, item: Snapshot | Tick) -> None:
        """A snapshot adopted, or a tick's expiry; called alone, after the facts before it."""
        if isinstance(item, Snapshot):
            found = await item.variables
            now = self._clock()
            opened = await self._open_calls()
            facts = self._flow.adopt(
                item.channels,
                now,
                requested_at=item.requested_at,
                open_calls=opened,
                variables=found,
            )
            await self._sink.apply(facts)
        else:
            await self._sink.apply(self._flow.expire(item.now))
            await self._sink.apply(self._flow.check_open(await self._open_calls(), item.now))

    async def _open_calls(self) -> list[OpenCall]:
        try:
            opened = await self._recorder.open_calls(self._pbx_id)
        except Exception:
            log.exception("AMI: open_calls failed; reconciling without the recorder's view")
            return []
        # After a restart the watcher has forgotten what Asterisk named before: the store has not.
        for call in opened:
            if call.recording_path and call.key not in self._recordings:
                self._recordings.named(call.key, call.recording_path, self._clock())
        return opened

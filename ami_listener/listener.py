"""The AMI listener: connection supervisor, one event queue, facts to the `CallRecorder`.

`AmiListener` composes the parts and owns their tasks:
- supervisor.py: one session at a time (built inside the running loop, connection.py),
  reconnect with back-off, Ping, periodic reconcile; the health.
- event_queue.py: panoramisk's synchronous callback only queues; one consumer folds the events
  in memory (pure `CallFlow`), one writer stores their facts (group commit), in order.
- reconcile.py: the `CoreShowChannels` snapshot after each login and periodically, and the
  sweep tick, each handled alone at its place in the queue.

Rules:
- Every task is owned by `run()`'s TaskGroup; nothing outlives it.
- Every `sweep_interval_s`, connected or not, a tick goes on the queue (what it does: reconcile.py);
  `sweep()` is the run-once hook that handles one now.
- Every `recording_poll_s` the recordings Asterisk named are polled (recordings.py); a confirmed
  one is reported to the recorder, a failure logged with the call and skipped.
- Caller numbers reach the log masked.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from pathlib import Path

from ami_listener.connection import AmiSession
from ami_listener.event_queue import EventQueue
from ami_listener.facts_sink import FactSink
from ami_listener.queue_items import Event, Tick
from ami_listener.reconcile import Reconciler
from ami_listener.recordings import RecordingWatcher
from ami_listener.supervisor import ConnectionSupervisor, ListenerHealth
from ami_listener.timings import Timings
from calltracking.core.callflow.reconcile import CallFlow
from calltracking.ports import CallRecorder

log = logging.getLogger(__name__)


class AmiListener:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str,
        secret: str,
        pbx_id: str,
        trunk_contexts: Collection[str],
        country_code: str,
        recordings_dir: str | Path,
        asterisk_monitor_dir: str,
        stale_call_s: float,
        recorder: CallRecorder,
        timings: Timings | None = None,
        events: str = "on",
        clock: Callable[[], datetime] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._recorder = recorder
        self._t = timings or Timings()
        self._clock = clock or (lambda: datetime.now(UTC))
        self.pbx_id = pbx_id
        self.flow = CallFlow(
            pbx_id,
            trunk_contexts,
            country_code,
            settle_s=self._t.settle_s,
            stale_call_s=stale_call_s,
        )
        self.recordings = RecordingWatcher(
            asterisk_monitor_dir, Path(recordings_dir), self._t.recording_wait_s
        )
        sink = FactSink(recorder, self.recordings, asterisk_monitor_dir, self._clock)
        self._reconciler = Reconciler(
            pbx_id=pbx_id,
            flow=self.flow,
            sink=sink,
            recorder=recorder,
            recordings=self.recordings,
            clock=self._clock,
            action_timeout_s=self._t.action_timeout_s,
        )
        self._queue = EventQueue(self.flow, sink, self._reconciler.handle, self._transport)
        self._supervisor = ConnectionSupervisor(
            host=host,
            port=port,
            username=username,
            secret=secret,
            events=events,
            timings=self._t,
            on_event=self._on_event,
            reconcile=self._reconcile,
            session_ended=self._queue.resume_reading,
            rng=rng,
        )

    @property
    def health(self) -> ListenerHealth:
        return self._supervisor.health

    @property
    def observe_event(self) -> Callable[[dict[str, str], datetime], None]:
        """Called after each event's facts are stored (for the event-lag histogram of /metrics)."""
        return self._queue.observe_event

    @observe_event.setter
    def observe_event(self, callback: Callable[[dict[str, str], datetime], None]) -> None:
        self._queue.observe_event = callback

    # -- the running parts -------------------------------------------------------------------
    async def run(self) -> None:
        """Listen until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._queue.consume(), name="ami-consume")
            tg.create_task(self._queue.write(), name="ami-write")
            tg.create_task(self._sweep_loop(), name="ami-sweep")
            tg.create_task(self._recording_loop(), name="ami-recordings")
            await self._supervisor.run()

    async def drain(self) -> None:
        """Wait until every queued event and snapshot has reached the recorder (for tests)."""
        await self._queue.join()

    async def sweep(self, now: datetime | None = None) -> None:
        """One sweep: settle, close stale calls (the run-once hook the sweep loop calls)."""
        await self._queue.handle(Tick(now or self._clock()))

    async def poll_recordings(self, now: datetime | None = None) -> None:
        found, given_up = await self.recordings.poll(now or self._clock())
        for key, size in found:
            try:
                await self._recorder.confirm_recording(key, size)
                log.info("call %s: recording confirmed, %d bytes", key.linkedid, size)
            except Exception:
                log.exception("call %s: confirm_recording failed", key.linkedid)
        for key in given_up:
            log.info("call %s: no non-empty recording appeared; not recorded", key.linkedid)

    def _on_event(self, headers: dict[str, str]) -> None:
        """panoramisk's callback: synchronous, only queues."""
        self._queue.put_event(Event(headers, self._clock()))

    async def _reconcile(self, session: AmiSession) -> None:
        await self._reconciler.ask(session, self._queue.put)

    def _transport(self) -> asyncio.Transport | None:
        session = self._supervisor.session
        return session.transport if session else None

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self._t.sweep_interval_s)
            self._queue.put(Tick(self._clock()))

    async def _recording_loop(self) -> None:
        while True:
            await asyncio.sleep(self._t.recording_poll_s)
            try:
                await self.poll_recordings()
            except Exception:
                log.exception("AMI: recording poll failed")

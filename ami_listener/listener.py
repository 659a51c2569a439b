"""The AMI listener: connection supervisor, one event queue, facts to the `CallRecorder`.

Rules:
- The panoramisk Manager is built inside the running loop, one per session (connection.py). Its
  event callback is synchronous and only puts the event, stamped with the receive time, on one
  `asyncio.Queue`; one consumer task feeds the pure `CallFlow` and awaits the recorder, so
  facts of a call reach the recorder in order. Reconcile snapshots and sweep ticks go
  through the same queue, so they are ordered with the events around them.
- Group commit: the consumer takes what is queued (up to `_BATCH_MAX` items), folds the events
  in memory (pure `CallFlow`) and hands their facts to one writer task; the writer stores all
  that was folded while it was busy with one `FactSink.apply` (one transaction when the
  recorder takes batches) and only then counts the events done (`drain`). Folding and handing
  over happen under one lock, so facts reach the store in the order the flow decided them.
  Irrelevant events cost a fold step and no I/O.
- A snapshot or tick (also `sweep()`) first waits until the writer has stored everything
  folded before it, so the recorder's open calls it reads are current, then is handled alone.
- A full queue (a slow recorder) pauses reading from the socket until it drains; Asterisk then
  buffers, and drops us past its `writetimeout` (we reconnect and reconcile).
- Reconnect: exponential back-off with jitter (backoff.py), reset after each successful login;
  panoramisk's own fixed-interval reconnect is switched off. A refused login is logged and retried
  the same way (the secret may be fixed on the PBX meanwhile).
- After each login, and every `reconcile_interval_s` while connected: `CoreShowChannels`, then
  `Getvar` of the DID and recording variables on each call's first channel (variables.py); calls
  it shows are adopted whatever context they are in (they may be calls the recorder already has),
  open calls it does not show are closed `reconciled`, at the recording's last write when that is
  later than their last event. A Ping without reply within `action_timeout_s` drops the connection.
- Every `sweep_interval_s`, connected or not: pending starts settle, calls nothing confirmed for
  `stale_call_s` close as `unknown` (reconciled), also the recorder's open calls we never saw.
- Each event is one boundary, and each fact (facts_sink.py): an exception is logged once with
  the call and skipped.
- Caller numbers reach the log masked.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ami_listener.backoff import Backoff
from ami_listener.connection import ActionFailed, AmiSession, LoginFailed
from ami_listener.facts_sink import FactSink
from ami_listener.recordings import RecordingWatcher
from ami_listener.variables import read_variables
from calltracking.core.callflow.facts import Fact
from calltracking.core.callflow.headers import normalised
from calltracking.core.callflow.reconcile import CallFlow
from calltracking.core.callflow.snapshot import channels_to_ask
from calltracking.core.records import OpenCall
from calltracking.ports import CallRecorder

log = logging.getLogger(__name__)
_QUEUE_HIGH, _QUEUE_LOW = 10_000, 1_000
_BATCH_MAX = 2_000  # queued items folded at a time, at most
_WRITES_MAX = 16  # folded batches waiting for the writer, at most
_MAX_ASKED = 2_000  # channels asked about per reconcile (3 Getvar each)


@dataclass(frozen=True, slots=True)
class Timings:
    """Every wait of the listener, so tests can shrink them."""

    connect_timeout_s: float = 10.0
    login_timeout_s: float = 10.0
    action_timeout_s: float = 15.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    ping_interval_s: float = 20.0
    reconcile_interval_s: float = 600.0
    sweep_interval_s: float = 30.0
    settle_s: float = 3.0
    recording_poll_s: float = 2.0
    recording_wait_s: float = 60.0


@dataclass(frozen=True, slots=True)
class ListenerHealth:
    connected: bool
    logged_in: bool
    last_error: str | None
    sessions: int  # successful logins so far

    @property
    def ok(self) -> bool:
        return self.logged_in


@dataclass(frozen=True, slots=True)
class _Event:
    headers: dict[str, str]
    received_at: datetime


@dataclass(frozen=True, slots=True)
class _Snapshot:
    channels: list[dict[str, str]]
    requested_at: datetime
    # uniqueid -> what Getvar read; the consumer waits for it at the snapshot's place in the
    # queue, so events that arrive meanwhile are still applied after the snapshot.
    variables: asyncio.Future[dict[str, dict[str, str]]]


@dataclass(frozen=True, slots=True)
class _Tick:
    now: datetime


@dataclass(slots=True)
class _Folded:
    """Facts of a run of events, and the events (acknowledged once the facts are written)."""

    facts: list[Fact] = field(default_factory=list)
    events: list[_Event] = field(default_factory=list)


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
        self._host, self._port, self._username, self._secret = host, port, username, secret
        self._events = events
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
        self._sink = FactSink(recorder, self.recordings, asterisk_monitor_dir, self._clock)
        self._backoff = Backoff(self._t.backoff_initial_s, self._t.backoff_max_s, rng=rng)
        self._queue: asyncio.Queue[_Event | _Snapshot | _Tick] = asyncio.Queue()
        self._lock = asyncio.Lock()
        # Folded facts on their way to the one writer; bounded, so folding cannot run far ahead.
        self._writes: asyncio.Queue[_Folded] = asyncio.Queue(_WRITES_MAX)
        self._session: AmiSession | None = None
        self._paused = False
        self._connected = False
        self._logged_in = False
        self._last_error: str | None = None
        self._sessions = 0
        # Called after each event's facts are stored (for the event-lag histogram of /metrics).
        self.observe_event: Callable[[dict[str, str], datetime], None] = lambda h, at: None

    @property
    def health(self) -> ListenerHealth:
        return ListenerHealth(self._connected, self._logged_in, self._last_error, self._sessions)

    # -- the running parts -------------------------------------------------------------------
    async def run(self) -> None:
        """Listen until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._consume(), name="ami-consume")
            tg.create_task(self._write(), name="ami-write")
            tg.create_task(self._sweep_loop(), name="ami-sweep")
            tg.create_task(self._recording_loop(), name="ami-recordings")
            await self._supervise()

    async def drain(self) -> None:
        """Wait until every queued event and snapshot has reached the recorder (for tests)."""
        await self._queue.join()

    async def sweep(self, now: datetime | None = None) -> None:
        """One sweep: settle, close stale calls (the run-once hook the sweep loop calls)."""
        await self._handle(_Tick(now or self._clock()))

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

    async def _supervise(self) -> None:
        while True:
            logged_in = False
            try:
                logged_in = await self._serve_session()
            except LoginFailed as exc:
                self._last_error = f"login refused: {exc}"
                log.error(
                    "AMI %s:%d: login as %r refused: %s",
                    self._host,
                    self._port,
                    self._username,
                    exc,
                )
            except (OSError, TimeoutError, ActionFailed) as exc:
                self._last_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "AMI %s:%d: connection failed: %s", self._host, self._port, self._last_error
                )
            finally:
                self._connected = self._logged_in = False
            if logged_in:
                self._backoff.reset()
            delay = self._backoff.next_delay()
            log.info("AMI %s:%d: reconnecting in %.1f s", self._host, self._port, delay)
            await asyncio.sleep(delay)

    async def _serve_session(self) -> bool:
        """One connection from connect to loss; True when it got logged in."""
        session = await AmiSession.open(
            host=self._host,
            port=self._port,
            username=self._username,
            secret=self._secret,
            events=self._events,
            on_event=self._on_event,
            connect_timeout=self._t.connect_timeout_s,
            login_timeout=self._t.login_timeout_s,
        )
        self._session, self._connected, self._logged_in = session, True, True
        self._sessions += 1
        self._last_error = None
        log.info("AMI %s:%d: logged in as %r", self._host, self._port, self._username)
        loop = asyncio.get_running_loop()
        try:
            await self._reconcile(session)
            next_reconcile = loop.time() + self._t.reconcile_interval_s
            while True:
                done, _ = await asyncio.wait({session.lost}, timeout=self._t.ping_interval_s)
                if done:
                    log.warning("AMI %s:%d: connection lost", self._host, self._port)
                    return True
                await session.action({"Action": "Ping"}, self._t.action_timeout_s)
                if loop.time() >= next_reconcile:
                    await self._reconcile(session)
                    next_reconcile = loop.time() + self._t.reconcile_interval_s
        except (OSError, TimeoutError) as exc:
            self._last_error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "AMI %s:%d: dropping the connection: %s", self._host, self._port, self._last_error
            )
            return True
        finally:
            self._session = None
            self._resume_reading()
            session.close()

    async def _reconcile(self, session: AmiSession) -> None:
        requested_at = self._clock()
        try:
            replies = await session.action({"Action": "CoreShowChannels"}, self._t.action_timeout_s)
        except ActionFailed as exc:
            log.error("AMI CoreShowChannels refused (%s): calls cannot be reconciled", exc)
            return
        channels = [r for r in replies if r.get("Event", "").lower() == "coreshowchannel"]
        variables: asyncio.Future[dict[str, dict[str, str]]] = (
            asyncio.get_running_loop().create_future()
        )
        self._queue.put_nowait(_Snapshot(channels, requested_at, variables))
        asked = channels_to_ask([normalised(c) for c in channels])[:_MAX_ASKED]
        found: dict[str, dict[str, str]] = {}
        try:
            found = await read_variables(session, asked, self._t.action_timeout_s)
        finally:
            variables.set_result(found)  # also when the session died: reconcile without them
        log.info("AMI reconcile: %d channels up, variables read on %d", len(channels), len(found))

    def _on_event(self, headers: dict[str, str]) -> None:
        """panoramisk's callback: synchronous, only queues."""
        self._queue.put_nowait(_Event(headers, self._clock()))
        if not self._paused and self._queue.qsize() >= _QUEUE_HIGH:
            transport = self._session.transport if self._session else None
            if transport is not None:
                log.warning("AMI: %d events waiting; pausing the socket", self._queue.qsize())
                transport.pause_reading()
                self._paused = True

    def _resume_reading(self) -> None:
        if self._paused:
            self._paused = False
            transport = self._session.transport if self._session else None
            if transport is not None and not transport.is_closing():
                transport.resume_reading()

    async def _consume(self) -> None:
        """Fold what is queued in memory and hand its facts to the writer; a snapshot or tick
        waits until everything before it is written, then is handled on its own."""
        while True:
            items = [await self._queue.get()]
            while len(items) < _BATCH_MAX and not self._queue.empty():
                items.append(self._queue.get_nowait())
            async with self._lock:
                folded = _Folded()
                for item in items:
                    if isinstance(item, _Event):
                        self._fold(item, folded)
                        continue
                    await self._writes.put(folded)
                    folded = _Folded()
                    await self._writes.join()
                    try:
                        await self._handle_locked(item)
                    except Exception:
                        log.exception("AMI: could not handle %s", _describe(item))
                    finally:
                        self._queue.task_done()
                await self._writes.put(folded)
            if self._paused and self._queue.qsize() <= _QUEUE_LOW:
                self._resume_reading()

    def _fold(self, item: _Event, folded: _Folded) -> None:
        try:
            folded.facts += self.flow.feed(item.headers, item.received_at)
        except Exception:
            log.exception("AMI: could not handle %s", _describe(item))
        folded.events.append(item)

    async def _write(self) -> None:
        """The one writer: what the consumer folded meanwhile goes in one `apply` (one
        transaction: group commit); its events are acknowledged once that returned."""
        while True:
            batch = [await self._writes.get()]
            while not self._writes.empty():
                batch.append(self._writes.get_nowait())
            try:
                await self._sink.apply([fact for folded in batch for fact in folded.facts])
            finally:
                for folded in batch:
                    for event in folded.events:
                        self.observe_event(event.headers, event.received_at)
                        self._queue.task_done()
                    self._writes.task_done()

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self._t.sweep_interval_s)
            self._queue.put_nowait(_Tick(self._clock()))

    async def _recording_loop(self) -> None:
        while True:
            await asyncio.sleep(self._t.recording_poll_s)
            try:
                await self.poll_recordings()
            except Exception:
                log.exception("AMI: recording poll failed")

    # -- from items to facts to the recorder ---------------------------------------------------
    async def _handle(self, item: _Snapshot | _Tick) -> None:
        async with self._lock:
            await self._writes.join()
            await self._handle_locked(item)

    async def _handle_locked(self, item: _Snapshot | _Tick) -> None:
        if isinstance(item, _Snapshot):
            found = await item.variables
            now = self._clock()
            opened = await self._open_calls()
            facts = self.flow.adopt(
                item.channels,
                now,
                requested_at=item.requested_at,
                open_calls=opened,
                variables=found,
            )
            await self._sink.apply(facts)
        else:
            await self._sink.apply(self.flow.expire(item.now))
            await self._sink.apply(self.flow.check_open(await self._open_calls(), item.now))

    async def _open_calls(self) -> list[OpenCall]:
        try:
            opened = await self._recorder.open_calls(self.pbx_id)
        except Exception:
            log.exception("AMI: open_calls failed; reconciling without the recorder's view")
            return []
        # After a restart the watcher has forgotten what Asterisk named before: the store has not.
        for call in opened:
            if call.recording_path and call.key not in self.recordings:
                self.recordings.named(call.key, call.recording_path, self._clock())
        return opened


def _describe(item: _Event | _Snapshot | _Tick) -> str:
    if isinstance(item, _Event):
        return f"event {item.headers.get('Event')!r} of {item.headers.get('Linkedid')!r}"
    return type(item).__name__.lstrip("_").lower()

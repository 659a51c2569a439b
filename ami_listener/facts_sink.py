"""Facts of the call flow, carried to the `CallRecorder` and the recording watcher.

Rules:
- A recorder with `record_facts` gets the facts of a batch in one call (one transaction, group
  commit); when that fails for a reason other than an unreachable database (the recorder
  retries those itself), the facts go one by one. One by one, each fact is one boundary: an
  exception is logged once with the call and skipped.
- A reconciled end is at the recording's last write when that is the better estimate
  (`reconcile.reconciled_end`); every end starts the wait for the recording's file.
- A recording named outside Asterisk's monitor folder is stored but can never be confirmed
  (logged once).
- Caller numbers reach the log masked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from ami_listener.recordings import RecordingWatcher, asterisk_path
from calltracking.core import numbers
from calltracking.core.callflow.facts import (
    CallAnswered,
    CallEnded,
    CallIgnored,
    CallStarted,
    Fact,
    RecordingNamed,
)
from calltracking.core.callflow.reconcile import reconciled_end
from calltracking.ports import CallRecorder

log = logging.getLogger(__name__)


class FactSink:
    def __init__(
        self,
        recorder: CallRecorder,
        recordings: RecordingWatcher,
        monitor_dir: str,
        clock: Callable[[], datetime],
    ) -> None:
        self._recorder = recorder
        self.recordings = recordings
        self._monitor_dir = monitor_dir
        self._clock = clock

    async def apply(self, facts: list[Fact]) -> None:
        """Record `facts` in order: in one transaction when the recorder takes batches
        (`record_facts`), else one by one; returns once they are stored (or logged as lost)."""
        if not facts:
            return
        record_facts = getattr(self._recorder, "record_facts", None)
        if record_facts is None:
            await self._one_by_one(facts)
            return
        prepared = [await self._prepared(fact) for fact in facts]
        try:
            await record_facts(prepared)
        except Exception:
            log.exception("calls: a batch of %d facts failed; storing them one by one", len(facts))
            await self._one_by_one(prepared, prepared=True)
            return
        for fact in prepared:
            self._after(fact)

    async def _one_by_one(self, facts: list[Fact], *, prepared: bool = False) -> None:
        for fact in facts:
            try:
                fact = fact if prepared else await self._prepared(fact)
                await self._record(fact)
                self._after(fact)
            except Exception:
                log.exception(
                    "call %s: recording %s failed", fact.key.linkedid, type(fact).__name__
                )

    async def _prepared(self, fact: Fact) -> Fact:
        if isinstance(fact, CallEnded) and fact.reconciled:
            # Closed after an outage: MixMonitor wrote until the hangup, which is closer to
            # the truth than the last event seen or the moment we noticed.
            at = reconciled_end(fact, await self.recordings.last_written(fact.key))
            return replace(fact, at=at)
        if isinstance(fact, RecordingNamed):
            return replace(fact, asterisk_path=asterisk_path(fact.asterisk_path, self._monitor_dir))
        return fact

    async def _record(self, fact: Fact) -> None:
        key = fact.key
        if isinstance(fact, CallStarted):
            await self._recorder.start_call(key, fact.did, fact.caller, fact.at)
        elif isinstance(fact, CallAnswered):
            await self._recorder.answer_call(key, fact.at, fact.answered_by)
        elif isinstance(fact, CallEnded):
            await self._recorder.end_call(
                key, fact.at, fact.status, fact.hangup_cause, reconciled=fact.reconciled
            )
        elif isinstance(fact, RecordingNamed):
            await self._recorder.name_recording(key, fact.asterisk_path)

    def _after(self, fact: Fact) -> None:
        """What follows a stored fact: the recording watcher, the log."""
        key = fact.key
        if isinstance(fact, CallStarted):
            log.info(
                "call %s: started, did %s, caller %s",
                key.linkedid,
                fact.did,
                numbers.mask(fact.caller),
            )
        elif isinstance(fact, CallAnswered):
            log.info("call %s: answered by %s", key.linkedid, fact.answered_by)
        elif isinstance(fact, CallEnded):
            self.recordings.call_ended(key, self._clock())
            log.info(
                "call %s: ended %s (cause %s%s)",
                key.linkedid,
                fact.status,
                fact.hangup_cause,
                ", reconciled" if fact.reconciled else "",
            )
        elif isinstance(fact, RecordingNamed):
            if self.recordings.named(key, fact.asterisk_path, self._clock()) is None:
                log.warning(
                    "call %s: recording %s is outside %s; it cannot be confirmed",
                    key.linkedid,
                    fact.asterisk_path,
                    self._monitor_dir,
                )
        elif isinstance(fact, CallIgnored):
            log.debug(
                "call %s: DID %r is not a number; not a tracked call", key.linkedid, fact.raw_did
            )

"""The facts the call flow returns: values only; `tracker` and `reconcile` decide when.

CallStarted     once per call, `at` = when the call was first seen.
CallIgnored     instead of CallStarted for a trunk call whose DID is not a number; nothing else
                follows for that Linkedid.
CallAnswered    once; `answered_by` is the device (`headers.device`), e.g. `PJSIP/101`.
RecordingNamed  after CallStarted, again whenever the name changes (also after the end).
CallEnded       once, `reconciled` when a snapshot or staleness ended it (then `up_until` is the
                last event's time when known); repeated only for a recorder that missed it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from calltracking.core.kinds import CallStatus
from calltracking.core.records import CallKey


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
    # A reconciled end: the last moment an event showed the call up (None: not known). The
    # real end lies after it, so a recording written later is a better end (`reconciled_end`).
    up_until: datetime | None = None


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

"""The seams between the PBX adapters (agi/, ami_listener/) and the store.

The store implements `CallRecorder`; every method is idempotent per `CallKey`, so the AGI and the
AMI listener may report the same call in any order and any number of times. The FastAGI asks
only for `CallStarter`, its first method.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from calltracking.core.kinds import CallStatus
from calltracking.core.records import CallKey, OpenCall, Resolution


class CallStarter(Protocol):
    """What the FastAGI needs of the store: a call's start and its attribution."""

    async def start_call(
        self, key: CallKey, did: str, caller: str | None, at: datetime
    ) -> Resolution:
        """Create the call (first report wins) and return its frozen attribution."""
        ...


class CallRecorder(CallStarter, Protocol):
    async def answer_call(self, key: CallKey, at: datetime, answered_by: str | None) -> None:
        """Mark the call answered; later reports of the same answer change nothing."""
        ...

    async def end_call(
        self,
        key: CallKey,
        at: datetime,
        status: CallStatus,
        hangup_cause: int | None = None,
        *,
        reconciled: bool = False,
    ) -> None:
        """Close the call with its final status; a closed call stays as it was closed."""
        ...

    async def name_recording(self, key: CallKey, asterisk_path: str) -> None:
        """Remember the recording file Asterisk writes (not yet confirmed)."""
        ...

    async def confirm_recording(self, key: CallKey, size_bytes: int) -> None:
        """The recording exists on disk and is non-empty: fires `call.recorded` once."""
        ...

    async def open_calls(self, pbx_id: str) -> list[OpenCall]:
        """Calls of this PBX still ringing or in progress, for reconciling after a reconnect."""
        ...

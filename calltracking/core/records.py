"""Read-only records the adapters pass around: a visit's session and a stored call.

Exporters and reports take these; the store builds them from rows. All times are aware UTC
`datetime`s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from calltracking.core.kinds import AttributionKind, CallStatus


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """The visit a call is attributed to: where the visitor came from and their analytics ids."""

    source: str
    medium: str
    campaign: str | None = None
    term: str | None = None
    content: str | None = None
    landing_url: str | None = None
    referrer: str | None = None
    ga_client_id: str | None = None  # "X.Y", parsed from the _ga cookie
    ga_session_id: str | None = None
    ym_client_id: str | None = None
    started_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One inbound call as stored: PBX facts plus its frozen attribution."""

    id: str
    account_id: str | None
    site_id: str | None
    did: str
    caller: str | None
    started_at: datetime
    status: CallStatus
    kind: AttributionKind
    confidence: float
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    answered_by: str | None = None
    visitor_id: str | None = None
    session: SessionInfo | None = None
    first_time_caller: bool = False
    lead: bool = False
    spam: bool = False
    reconciled: bool = False
    static_label: str | None = None
    # Qualification (core/qualification.py): the account's tags on the call, and the verdict of
    # its target-call rule (None: the account has no rule).
    tags: tuple[str, ...] = ()
    target_call: bool | None = None

    @property
    def duration_s(self) -> int:
        if self.ended_at is None:
            return 0
        return max(0, int((self.ended_at - self.started_at).total_seconds()))

    @property
    def talk_s(self) -> int:
        if self.ended_at is None or self.answered_at is None:
            return 0
        return max(0, int((self.ended_at - self.answered_at).total_seconds()))

    @property
    def hold_s(self) -> int:
        """Ring time before the answer (Metrika's HoldDuration); the whole call when missed."""
        end = self.answered_at or self.ended_at
        if end is None:
            return 0
        return max(0, int((end - self.started_at).total_seconds()))

    @property
    def tracked(self) -> bool:
        return self.kind.tracked


@dataclass(frozen=True, slots=True)
class CallKey:
    """A call's identity: Linkedids are unique only per Asterisk, so the PBX id is part of it."""

    pbx_id: str
    linkedid: str


@dataclass(frozen=True, slots=True)
class Resolution:
    """What the tracker decided about a call when it was first seen (frozen afterwards)."""

    call_id: str
    kind: AttributionKind
    site_id: str | None = None
    source: str | None = None
    medium: str | None = None
    campaign: str | None = None
    route: str | None = None
    record: bool = True

    @property
    def label(self) -> str:
        """ASCII, at most 40 characters, for CALLERID(name): `source/medium` or the kind."""
        text = f"{self.source}/{self.medium}" if self.source and self.medium else str(self.kind)
        ascii_text = text.encode("ascii", "ignore").decode("ascii")
        return "".join(ch for ch in ascii_text if ch.isprintable() and ch not in '"\\')[:40]


@dataclass(frozen=True, slots=True)
class OpenCall:
    """A call the store still has as ringing (for reconciling after an AMI reconnect)."""

    key: CallKey
    call_id: str
    started_at: datetime
    answered_at: datetime | None
    # Named by Asterisk but not yet confirmed: a restarted listener still confirms it.
    recording_path: str | None = None

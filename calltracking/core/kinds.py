"""The words of the domain: attribution kinds, call statuses, lease end reasons, export states."""

from enum import StrEnum


class AttributionKind(StrEnum):
    DYNAMIC = "dynamic"
    HELD = "held"
    COOLED = "cooled"
    STATIC = "static"
    INITIAL = "initial"
    EXPIRED = "expired"
    UNTRACKED = "untracked"
    UNATTRIBUTED = "unattributed"
    UNKNOWN = "unknown"

    @property
    def tracked(self) -> bool:
        """Tracked calls are matched to a visitor session."""
        return self in TRACKED_KINDS

    @property
    def is_default(self) -> bool:
        return self in DEFAULT_KINDS


TRACKED_KINDS = frozenset({AttributionKind.DYNAMIC, AttributionKind.HELD, AttributionKind.COOLED})
DEFAULT_KINDS = frozenset(
    {AttributionKind.INITIAL, AttributionKind.EXPIRED, AttributionKind.UNTRACKED}
)


class DisplayKind(StrEnum):
    """What a visitor's tabs show: a leased number or one of the site's default numbers."""

    DYNAMIC = "dynamic"
    INITIAL = "initial"
    EXPIRED = "expired"
    UNTRACKED = "untracked"


class CallStatus(StrEnum):
    RINGING = "ringing"
    ANSWERED = "answered"
    MISSED = "missed"
    BUSY = "busy"
    FAILED = "failed"
    UNKNOWN = "unknown"


class LeaseEndReason(StrEnum):
    CLOSED = "closed"
    REVOKED = "revoked"
    PREEMPTED = "preempted"
    SITE_DELETED = "site_deleted"


class ExportState(StrEnum):
    NOT_CONFIGURED = "not_configured"
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"


class PoolState(StrEnum):
    FREE = "free"
    LEASED = "leased"
    HELD = "held"
    STATIC = "static"

"""Domain events: the envelope every bus message carries (CONTRACT.md, "Event bus").

`id` is the event's own id, the key consumers deduplicate on; `data` is JSON-ready.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class EventKey(StrEnum):
    CALL_STARTED = "call.started"
    CALL_ANSWERED = "call.answered"
    CALL_ENDED = "call.ended"
    CALL_RECORDED = "call.recorded"
    LEASE_ASSIGNED = "lease.assigned"
    LEASE_RELEASED = "lease.released"
    POOL_EXHAUSTED = "pool.exhausted"


@dataclass(frozen=True, slots=True)
class Event:
    key: str
    id: str
    occurred_at: datetime
    data: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "event": self.key,
            "id": self.id,
            "occurred_at": self.occurred_at.isoformat(),
            "data": dict(self.data),
        }

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Event:
        """Parse a bus body; raises ValueError when it is not an event envelope."""
        try:
            key, event_id, occurred, data = (
                body["event"],
                body["id"],
                body["occurred_at"],
                body["data"],
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not an event envelope: missing {exc}") from None
        if not isinstance(key, str) or not isinstance(event_id, str) or not isinstance(data, dict):
            raise ValueError("not an event envelope: bad field types")
        return cls(key=key, id=event_id, occurred_at=datetime.fromisoformat(occurred), data=data)

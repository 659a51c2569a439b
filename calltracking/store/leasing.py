"""Ending a lease outside the visitor lifecycle (a deleted site): the lease row, the number's
last release (hold, cool-down) and the `lease.released` event, in the caller's transaction.
Leases are started and ended on the hot path by `store.deciders` from the engine's effects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core.events import EventKey
from calltracking.core.kinds import LeaseEndReason
from calltracking.store import schema as t
from calltracking.store.outbox import emit


@dataclass(frozen=True, slots=True)
class LeaseRow:
    id: str
    site_id: str
    number: str
    visitor_id: str
    visit_id: str | None
    assigned_at: datetime
    ended_at: datetime | None = None
    end_reason: str | None = None

    def to_event(self) -> dict[str, object]:
        return {
            "id": self.id,
            "site_id": self.site_id,
            "number": self.number,
            "visitor": self.visitor_id,
            "started_at": self.assigned_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "reason": self.end_reason,
        }


def _lease(row: sa.Row[tuple[object, ...]] | None) -> LeaseRow | None:
    if row is None:
        return None
    m = row._mapping
    return LeaseRow(
        id=m["id"],
        site_id=m["site_id"],
        number=m["number"],
        visitor_id=m["visitor_id"],
        visit_id=m["visit_id"],
        assigned_at=m["assigned_at"],
        ended_at=m["ended_at"],
        end_reason=m["end_reason"],
    )


async def end_lease(
    conn: AsyncConnection, lease_id: str, reason: LeaseEndReason, now: datetime
) -> LeaseRow | None:
    """End an active lease (the hold starts); None when it had ended already."""
    result = await conn.execute(
        t.leases.update()
        .where(t.leases.c.id == lease_id, t.leases.c.ended_at.is_(None))
        .values(ended_at=now, end_reason=str(reason))
    )
    if result.rowcount != 1:
        return None
    row = (await conn.execute(sa.select(t.leases).where(t.leases.c.id == lease_id))).first()
    lease = _lease(row)
    assert lease is not None
    await conn.execute(
        t.numbers.update()
        .where(t.numbers.c.e164 == lease.number)
        .values(
            last_released_at=now, last_visitor_id=lease.visitor_id, cooling_site_id=lease.site_id
        )
    )
    await emit(conn, EventKey.LEASE_RELEASED, lease.to_event(), now)
    return lease

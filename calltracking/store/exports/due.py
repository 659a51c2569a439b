"""When the next export or webhook delivery falls due, so the workers sleep until then.

Rules: only pending rows count (a claimed row is pending with its claim's end as due time, so
a lapsed claim is picked up too); None when nothing is pending.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from calltracking.core.kinds import ExportState
from calltracking.store import schema as t
from calltracking.store.db import Database


async def next_export_due(db: Database, target: str) -> datetime | None:
    exports = t.exports.c
    async with db.read() as conn:
        due: datetime | None = await conn.scalar(
            sa.select(sa.func.min(exports.next_attempt_at)).where(
                exports.target == target, exports.state == str(ExportState.PENDING)
            )
        )
    return due


async def next_delivery_due(db: Database) -> datetime | None:
    deliveries = t.webhook_deliveries.c
    async with db.read() as conn:
        due: datetime | None = await conn.scalar(
            sa.select(sa.func.min(deliveries.next_attempt_at)).where(deliveries.state == "pending")
        )
    return due

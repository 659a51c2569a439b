"""Waiting for the outbox relay: until every outbox row is marked published."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from calltracking.store import schema as t
from calltracking.store.db import Database


async def until_outbox_published(db: Database, within_s: float = 10.0) -> None:
    """Until no outbox row waits (a row is marked once the relay round that sent it ends)."""
    pending = (
        sa.select(sa.func.count()).select_from(t.outbox).where(t.outbox.c.published_at.is_(None))
    )
    async with asyncio.timeout(within_s):
        while True:
            async with db.read() as conn:
                if not await conn.scalar(pending):
                    return
            await asyncio.sleep(0.02)

"""The transactional outbox: events are written in the same transaction as the change they
describe, and published later by the relay (calltracking.bus.relay) at least once.

`SqlOutbox(db, inline=True)` on a SQLite file reads the pending events and marks them published
synchronously on the loop's thread (sqlite_inline.py), the mark holding the Database's writer
turn for well under a millisecond, where an UPDATE through aiosqlite held it for a few hops of
a busy loop (tens of milliseconds under load: the FastAGI's call starts waited on it). When
SQLite would have to wait (another process writes) it goes through the engine as before. The
owner closes it (`close()`).

Settled rows: with the in-process bus every consumer is in this process, and the bus can tell
whether any would take an event (`MemoryBus.wanted`: a queue bound to its key whose consumers'
`wants` do not all refuse it). An event none would take is dropped when published, so the
relay's whole work on it would be to read it, drop it and mark it. The FastAGI's call starts
(call_starts.py) write such an event published in the same transaction instead: still in the
outbox, with its change, for retention and webhook retries, and never read by the relay. The
answer may change between the write and a relay round (a dashboard opens its live feed, a
webhook is added), as it may between a relay round and the handling; consumers already take
what they are given from that moment on (a feed reloads its list, a webhook applies to events
from `SiteCache.TTL_S` later). With a broker, consumers outside this process may want any
event, so every row is relayed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core.events import Event
from calltracking.store.db import Database
from calltracking.store.driver_select import select_rows
from calltracking.store.ids import time_ordered_id
from calltracking.store.schema import outbox
from calltracking.store.sql_lists import one_of
from calltracking.store.sqlite_inline import Busy, InlineSqlite, usable

_PENDING = (
    sa.select(outbox.c.payload)
    .where(outbox.c.published_at.is_(None))
    .order_by(outbox.c.seq)
    .limit(sa.bindparam("limit", type_=sa.Integer))
)
# SQLite only (the inline path): the ids as one JSON array text, one statement whatever their
# number.
_MARK = (
    outbox.update()
    .where(
        outbox.c.event_id.in_(
            sa.select(sa.literal_column("value")).select_from(
                sa.func.json_each(sa.bindparam("ids", type_=sa.String))
            )
        )
    )
    .values(published_at=sa.bindparam("at", type_=outbox.c.published_at.type))
)


async def emit(conn: AsyncConnection, key: str, data: Mapping[str, Any], at: datetime) -> Event:
    event = Event(key=key, id=time_ordered_id(), occurred_at=at, data=dict(data))
    await conn.execute(
        outbox.insert().values(event_id=event.id, key=key, payload=event.to_json(), occurred_at=at)
    )
    return event


class SqlOutbox:
    """The relay's view of the outbox table."""

    def __init__(self, db: Database, *, inline: bool = False) -> None:
        self.db = db
        self._inline = InlineSqlite(db.url) if inline and usable(db.url) else None

    def close(self) -> None:
        if self._inline is not None:
            self._inline.close()

    async def fetch_pending(self, limit: int) -> list[Event]:
        if self._inline is not None:
            try:
                pending = self._inline.read(select_rows, _PENDING, {"limit": limit})
                return [Event.from_json(row.payload) for row in pending]
            except Busy:
                pass  # SQLite would have waited: the engine's reader may
        async with self.db.read() as conn:
            rows = await conn.execute(
                sa.select(outbox.c.payload)
                .where(outbox.c.published_at.is_(None))
                .order_by(outbox.c.seq)
                .limit(limit)
            )
            return [Event.from_json(row.payload) for row in rows]

    async def mark_published(self, event_ids: Sequence[str]) -> None:
        if not event_ids:
            return
        if self._inline is not None:
            params = {"ids": json.dumps(sorted(event_ids)), "at": datetime.now(UTC)}
            try:
                async with self.db.writer_turn():
                    self._inline.write(lambda conn: conn.execute(_MARK, params))
                self.db.committed_without_checkpoint()
                return
            except Busy:
                pass  # nothing was written; the engine's writer may wait its turn
        async with self.db.write() as conn:
            await conn.execute(
                outbox.update()
                .where(one_of(conn, outbox.c.event_id, event_ids))
                .values(published_at=datetime.now(UTC))
            )

    async def pending_count(self) -> int:
        async with self.db.read() as conn:
            value = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(outbox)
                .where(outbox.c.published_at.is_(None))
            )
            return int(value or 0)

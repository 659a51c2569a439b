"""A site's lock hands its next holder the version the previous holder committed, and the
account's room is counted under the account's lock, even when the caller had to wait for it."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from calltracking.store import schema as t
from calltracking.store import site_state
from calltracking.store.db import Database
from calltracking.store.number_moves import account_room
from tests.store.seed import seed_site


async def test_a_waiter_for_the_site_lock_reads_the_version_its_holder_committed(
    any_db: Database,
) -> None:
    site = await seed_site(any_db)
    holder_in = asyncio.Event()
    async with any_db.engine.connect() as probe:
        start = await site_state.lock_site(probe, site.id)
        await probe.rollback()

    async def holder() -> None:
        async with any_db.write() as conn:
            await site_state.lock_site(conn, site.id)
            holder_in.set()
            await asyncio.sleep(0.3)  # the waiter asks meanwhile
            await site_state.bump(conn, site.id)

    async def waiter() -> int:
        await holder_in.wait()
        async with any_db.write() as conn:
            return await site_state.lock_site(conn, site.id)

    _, seen = await asyncio.gather(holder(), waiter())
    assert seen == start + 1


async def test_the_account_room_counts_numbers_committed_while_waiting_for_its_lock(
    pg_db: Database,
) -> None:
    site = await seed_site(pg_db, reserve=5, max_numbers=10)
    async with pg_db.read() as conn:
        before = await account_room(conn, site.account_id)
        spare = await conn.scalar(
            sa.select(t.numbers.c.e164).where(t.numbers.c.site_id.is_(None)).limit(1)
        )
    holder_in = asyncio.Event()

    async def holder() -> None:
        async with pg_db.write() as conn:
            await account_room(conn, site.account_id)  # takes the account's lock
            holder_in.set()
            await asyncio.sleep(0.3)
            await conn.execute(
                t.numbers.update()
                .where(t.numbers.c.e164 == spare)
                .values(site_id=site.id, role="pool")
            )

    async def waiter() -> int:
        await holder_in.wait()
        async with pg_db.write() as conn:
            return await account_room(conn, site.account_id)

    _, room = await asyncio.gather(holder(), waiter())
    assert room == before - 1

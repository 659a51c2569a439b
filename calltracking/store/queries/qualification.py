"""An account's call qualification: its tags, the tags on its calls, its target-call rule.

Rules:
- Callers have checked ownership; every change runs inside the caller's one write transaction.
- Replacing the account's tags removes a dropped tag from its calls too, so a call never carries
  a tag its account no longer defines.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core.qualification import is_target_call
from calltracking.core.records import CallRecord
from calltracking.store import schema as t


@dataclass(frozen=True, slots=True)
class Qualification:
    account_id: str
    tags: list[str]
    target_call_talk_s: int | None


async def load(conn: AsyncConnection, account_id: str) -> Qualification:
    rule = await conn.scalar(
        sa.select(t.accounts.c.target_call_talk_s).where(t.accounts.c.id == account_id)
    )
    return Qualification(account_id, await account_tags(conn, account_id), rule)


async def account_tags(conn: AsyncConnection, account_id: str) -> list[str]:
    query = sa.select(t.account_tags.c.name).where(t.account_tags.c.account_id == account_id)
    return list(await conn.scalars(query.order_by(t.account_tags.c.name)))


async def replace_tags(
    conn: AsyncConnection, account_id: str, tags: list[str], now: datetime
) -> None:
    before = set(await account_tags(conn, account_id))
    dropped, added = before - set(tags), [tag for tag in tags if tag not in before]
    if dropped:
        await conn.execute(
            t.account_tags.delete().where(
                t.account_tags.c.account_id == account_id, t.account_tags.c.name.in_(dropped)
            )
        )
        own_calls = sa.select(t.calls.c.id).where(t.calls.c.account_id == account_id)
        await conn.execute(
            t.call_tags.delete().where(
                t.call_tags.c.call_id.in_(own_calls), t.call_tags.c.tag.in_(dropped)
            )
        )
    for tag in added:
        await conn.execute(
            t.account_tags.insert().values(account_id=account_id, name=tag, created_at=now)
        )


async def set_rule(conn: AsyncConnection, account_id: str, min_talk_s: int | None) -> None:
    await conn.execute(
        t.accounts.update()
        .where(t.accounts.c.id == account_id)
        .values(target_call_talk_s=min_talk_s)
    )


async def set_call_tags(conn: AsyncConnection, call_id: str, tags: list[str]) -> None:
    await conn.execute(t.call_tags.delete().where(t.call_tags.c.call_id == call_id))
    for tag in tags:
        await conn.execute(t.call_tags.insert().values(call_id=call_id, tag=tag))


async def qualified(conn: AsyncConnection, record: CallRecord) -> CallRecord:
    """`record` with its tags and its account's target-call verdict."""
    query = sa.select(t.call_tags.c.tag).where(t.call_tags.c.call_id == record.id)
    tags = tuple(await conn.scalars(query.order_by(t.call_tags.c.tag)))
    rule = None
    if record.account_id is not None:
        rule = await conn.scalar(
            sa.select(t.accounts.c.target_call_talk_s).where(t.accounts.c.id == record.account_id)
        )
    target = is_target_call(
        record.talk_s,
        answered=str(record.status) == "answered",
        spam=record.spam,
        min_talk_s=rule,
    )
    return replace(record, tags=tags, target_call=target)

"""An account's leads, counted by month in the account's time zone.

Rules:
- A month is the account's (its `timezone`, UTC when unset), not the server's.
- Spam calls are never leads; a call unmarked as spam is a lead again only if the caller has no
  other lead that month (`core.reports.leads.is_lead`).
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core.kinds import AttributionKind
from calltracking.core.reports.leads import is_lead
from calltracking.core.reports.localtime import month_bounds, month_of
from calltracking.store import schema as t
from calltracking.store.queries.call_listing import calls_json


async def account_zone(conn: AsyncConnection, account_id: str) -> ZoneInfo:
    name = await conn.scalar(sa.select(t.accounts.c.timezone).where(t.accounts.c.id == account_id))
    return ZoneInfo(name or "UTC")


async def month_lead_calls(
    conn: AsyncConnection, account_id: str, month: str
) -> list[dict[str, Any]]:
    """The account's leads of `month` (its time zone), newest first."""
    tz = await account_zone(conn, account_id)
    start, end = month_bounds(month, tz)
    c = t.calls.c
    rows = await conn.execute(
        sa.select(t.calls)
        .where(
            c.account_id == account_id,
            c.lead.is_(True),
            c.spam.is_(False),
            c.started_at >= start,
            c.started_at < end,
        )
        .order_by(c.started_at.desc(), c.id.desc())
    )
    return await calls_json(conn, list(rows))


async def is_lead_again(conn: AsyncConnection, row: Any) -> bool:
    if row.account_id is None or row.caller is None:
        return False
    tz = await account_zone(conn, row.account_id)
    start, end = month_bounds(month_of(row.started_at, tz), tz)
    c = t.calls.c
    others = await conn.scalar(
        sa.select(sa.func.count())
        .select_from(t.calls)
        .where(
            c.account_id == row.account_id,
            c.caller == row.caller,
            c.id != row.id,
            c.lead.is_(True),
            c.spam.is_(False),
            c.started_at >= start,
            c.started_at < end,
        )
    )
    return is_lead(AttributionKind(row.kind), False, row.caller, int(others or 0))

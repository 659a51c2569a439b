"""Accounts and sites: reading them, creating them (a site's defaults and static numbers are
claimed through `number_moves`, whose rules apply).

The number functions (`add_to_reserve`, `move_from_reserve`, `release_to_reserve`,
`top_up_pool`, ...) live in `number_moves` and are re-exported here for existing callers.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core.engine.parts import MAX_PARTS
from calltracking.core.errors import Conflict
from calltracking.core.kinds import AttributionKind
from calltracking.core.settings import SiteSettings, settings_from_json, settings_to_json
from calltracking.store.ids import new_id
from calltracking.store.number_moves import (
    NumberOwner,
    account_numbers_in_use,
    add_to_reserve,
    check_account_capacity,
    claim_for,
    claim_number,
    drop_number,
    move_from_reserve,
    release_to_reserve,
    top_up_pool,
)
from calltracking.store.schema import accounts, sites

__all__ = [  # the number functions are re-exported for callers that import them from here
    "Account",
    "Site",
    "account_numbers_in_use",
    "add_to_reserve",
    "check_account_capacity",
    "claim_number",
    "create_account",
    "create_site",
    "drop_number",
    "get_account",
    "get_site",
    "get_site_by_key",
    "list_sites",
    "move_from_reserve",
    "release_to_reserve",
    "site_from_row",
    "site_from_text_row",
    "top_up_pool",
]

DEFAULT_ORDER = (AttributionKind.INITIAL, AttributionKind.EXPIRED, AttributionKind.UNTRACKED)


@dataclass(frozen=True, slots=True)
class Site:
    id: str
    account_id: str
    key: str
    name: str
    domains: tuple[str, ...]
    defaults: Mapping[AttributionKind, str]
    settings: SiteSettings
    created_at: datetime
    deleted_at: datetime | None
    decision_parts: int = 1  # parts of its pool decided by different nodes (core/engine/parts.py)

    def default_kinds(self, e164: str) -> tuple[AttributionKind, ...]:
        return tuple(kind for kind in DEFAULT_ORDER if self.defaults[kind] == e164)


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    name: str
    timezone: str
    max_numbers: int
    retention_days: int


def site_from_row(row: Any) -> Site:
    return Site(
        id=row.id,
        account_id=row.account_id,
        key=row.key,
        name=row.name,
        domains=tuple(row.domains),
        defaults={
            AttributionKind.INITIAL: row.default_initial,
            AttributionKind.EXPIRED: row.default_expired,
            AttributionKind.UNTRACKED: row.default_untracked,
        },
        settings=settings_from_json(row.settings),
        created_at=row.created_at,
        deleted_at=row.deleted_at,
        # Readers that never decide (call starts, gauges) may leave the split out.
        decision_parts=max(1, min(MAX_PARTS, getattr(row, "decision_parts", 1) or 1)),
    )


# What a Site is built from (`site_from_row`): not the state version or recent changes, which
# every lease bumps. A reader that selects these with the JSON columns as their stored text gets
# a hashable row, and a site unchanged since its last read is a cache hit
# (`site_from_text_row`), not a JSON parse and a settings validation each time.
SITE_COLUMNS = (
    "id",
    "account_id",
    "key",
    "name",
    "domains",
    "default_initial",
    "default_expired",
    "default_untracked",
    "settings",
    "created_at",
    "deleted_at",
)
SITE_JSON_COLUMNS = frozenset(
    name for name in SITE_COLUMNS if isinstance(sites.c[name].type, sa.JSON)
)


@functools.lru_cache(maxsize=256)
def site_from_text_row(row: Any) -> Site:
    """The Site of a row of SITE_COLUMNS whose JSON columns are their stored text."""
    return site_from_row(
        row._replace(**{c: json.loads(getattr(row, c)) for c in SITE_JSON_COLUMNS})
    )


async def get_site(conn: AsyncConnection, site_id: str) -> Site | None:
    row = (await conn.execute(sa.select(sites).where(sites.c.id == site_id))).first()
    return site_from_row(row) if row else None


async def get_site_by_key(conn: AsyncConnection, key: str) -> Site | None:
    row = (
        await conn.execute(sa.select(sites).where(sites.c.key == key, sites.c.deleted_at.is_(None)))
    ).first()
    return site_from_row(row) if row else None


async def list_sites(conn: AsyncConnection, account_id: str | None) -> list[Site]:
    query = sa.select(sites).where(sites.c.deleted_at.is_(None)).order_by(sites.c.created_at)
    if account_id is not None:
        query = query.where(sites.c.account_id == account_id)
    return [site_from_row(row) for row in await conn.execute(query)]


async def get_account(conn: AsyncConnection, account_id: str) -> Account | None:
    row = (await conn.execute(sa.select(accounts).where(accounts.c.id == account_id))).first()
    if row is None:
        return None
    return Account(row.id, row.name, row.timezone, row.max_numbers, row.retention_days)


async def create_account(
    conn: AsyncConnection,
    name: str,
    now: datetime,
    *,
    timezone: str = "Europe/Moscow",
    max_numbers: int = 50,
    retention_days: int = 365,
) -> Account:
    account = Account(new_id(), name, timezone, max_numbers, retention_days)
    await conn.execute(
        accounts.insert().values(
            id=account.id,
            name=name,
            timezone=timezone,
            max_numbers=max_numbers,
            retention_days=retention_days,
            created_at=now,
        )
    )
    return account


async def create_site(
    conn: AsyncConnection,
    *,
    account_id: str,
    name: str,
    domains: Sequence[str],
    defaults: Mapping[str, str],
    settings: SiteSettings,
    now: datetime,
) -> Site:
    for e164 in settings.static:
        if e164 in defaults.values():
            raise Conflict(f"settings.static.{e164}: {e164} is one of the site's default numbers")
    site_id, key = new_id(), new_id()[:20]
    held_before = await account_numbers_in_use(conn, account_id)
    await conn.execute(
        sites.insert().values(
            id=site_id,
            account_id=account_id,
            key=key,
            name=name,
            domains=list(domains),
            default_initial=defaults["initial"],
            default_expired=defaults["expired"],
            default_untracked=defaults["untracked"],
            settings=settings_to_json(settings, mask_secrets=False),
            created_at=now,
        )
    )
    owner = NumberOwner(site_id, account_id)
    for kind in ("initial", "expired", "untracked"):
        await claim_for(conn, defaults[kind], owner, "default", None, f"defaults.{kind}", now)
    for e164, label in settings.static.items():
        await claim_for(conn, e164, owner, "static", label, f"settings.static.{e164}", now)
    await check_account_capacity(conn, account_id, held_before)
    site = await get_site(conn, site_id)
    assert site is not None
    return site

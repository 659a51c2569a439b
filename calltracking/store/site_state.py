"""The version of a site's pool and leases, and the lock that orders changes to them.

Every write that changes a site's numbers or leases bumps `sites.state_version` in its own
transaction. A node deciding for a site from memory (store/deciders.py) takes the site's lock,
reads the version, and reloads its state from the database when the version is not the one it
wrote last: another node, or an operator's change, came in between.

The lock: on PostgreSQL a transaction-scoped advisory lock per site (only what allocation
really contends for: one site's pool, never the account), taken and followed by the version's read
in one round trip (`calltracking_lock_site`, migration 0007a); SQLite writers are serial anyway.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.store.driver_sql import asyncpg_text, driver_text


@functools.lru_cache(maxsize=1024)
def lock_key(site_id: str) -> int:
    """A stable signed 64-bit key for `pg_advisory_xact_lock`."""
    digest = hashlib.blake2b(f"calltracking.site:{site_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# Every batch runs these: fixed texts through the driver (driver_sql.py).
_LOCK = "SELECT calltracking_lock_site({}, {})"  # PostgreSQL (migration 0007a)
_VERSION = "SELECT state_version FROM sites WHERE id = {}"  # SQLite: writers are serial
_BUMP = "UPDATE sites SET state_version = state_version + 1 WHERE id = {}"


async def lock_site(conn: AsyncConnection, site_id: str, driver: Any = None) -> int:
    """Lock the site's state for this transaction and return its version. `driver`: the
    connection's asyncpg connection, to run it on (kept_transactions.py)."""
    if driver is not None:
        return int(await driver.fetchval(asyncpg_text(_LOCK), lock_key(site_id), site_id) or 0)
    if conn.dialect.name == "postgresql":
        result = await conn.exec_driver_sql(driver_text(conn, _LOCK), (lock_key(site_id), site_id))
    else:
        result = await conn.exec_driver_sql(driver_text(conn, _VERSION), (site_id,))
    return int(result.scalar() or 0)


async def bump(conn: AsyncConnection, site_id: str) -> None:
    await conn.exec_driver_sql(driver_text(conn, _BUMP), (site_id,))


_BUMP_WITH_CHANGES = (
    "UPDATE sites SET state_version = state_version + 1, recent_changes = {} WHERE id = {}"
)


def bump_statement(site_id: str, recent_changes: str) -> tuple[str, tuple[str, str]]:
    """A group commit's bump, with the site's recent changes (recent_changes.py), as a
    statement to run along with others (`bulk_insert.insert_tables`' `also`) or by `run`."""
    return _BUMP_WITH_CHANGES, (recent_changes, site_id)


async def run(
    conn: AsyncConnection, statement: tuple[str, tuple[object, ...]], driver: Any = None
) -> None:
    template, params = statement
    if driver is not None:
        await driver.execute(asyncpg_text(template), *params)
    else:
        await conn.exec_driver_sql(driver_text(conn, template), params)


# -- a part of a split site (core/engine/parts.py, migration 0010a) ------------------------------
_LOCK_PART = "SELECT calltracking_lock_part({}, {}, {}, {})"  # PostgreSQL
_PART_VERSIONS = (  # SQLite: writers are serial
    "SELECT s.state_version, COALESCE(p.state_version, 0) FROM sites s"
    " LEFT JOIN site_parts p ON p.site_id = s.id AND p.part = {} WHERE s.id = {}"
)
_BUMP_PART = (
    "INSERT INTO site_parts (site_id, part, state_version, recent_changes) VALUES ({}, {}, 1, {})"
    " ON CONFLICT (site_id, part) DO UPDATE SET"
    " state_version = site_parts.state_version + 1, recent_changes = excluded.recent_changes"
)


async def lock_part(
    conn: AsyncConnection, site_id: str, part: int, driver: Any = None
) -> tuple[int, int]:
    """Lock one part of a split site for this transaction and return (the site's version, the
    part's version). The site's lock is taken shared: `split-site` and an unsplit site's batch
    take it exclusively, so batches of an old split and a new one never interleave, while the
    parts never wait for each other."""
    if conn.dialect.name == "postgresql":
        params: tuple[object, ...] = (
            lock_key(site_id),
            lock_key(f"{site_id}#{part}"),
            site_id,
            part,
        )
        if driver is not None:
            row = await driver.fetchval(asyncpg_text(_LOCK_PART), *params)
        else:
            row = (await conn.exec_driver_sql(driver_text(conn, _LOCK_PART), params)).scalar()
        site_version, part_version = row if row else (0, 0)
    else:
        result = await conn.exec_driver_sql(driver_text(conn, _PART_VERSIONS), (part, site_id))
        found: Any = result.first()
        site_version, part_version = (found[0], found[1]) if found else (0, 0)
    return int(site_version or 0), int(part_version or 0)


def part_bump_statement(
    site_id: str, part: int, recent_changes: str
) -> tuple[str, tuple[object, ...]]:
    """A part's group commit bumps its own version (its row is made on its first batch)."""
    return _BUMP_PART, (site_id, part, recent_changes)

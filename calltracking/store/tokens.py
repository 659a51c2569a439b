"""API tokens: random, shown once, stored as SHA-256 hashes. The configured admin token
(`CALLTRACKING_ADMIN_TOKEN`) works without being stored (and so cannot be revoked here: change
the setting).

Revocation: a token is named by its first PREFIX_LEN characters (kept in clear; the rest is
~200 random bits, so the prefix gives nothing away) or by its whole value (tokens made before
the prefix was stored). A revoked token authenticates no one from the next request on. The admin
may revoke any stored token; an account only its own, others answer NotFound like a missing one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sys
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.config import Config
from calltracking.core.errors import Conflict, InvalidInput, NotFound
from calltracking.store.db import Database
from calltracking.store.ids import new_id
from calltracking.store.schema import accounts, tokens

TOKEN_PREFIX = "ct_"
PREFIX_LEN = 12


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as: the admin, or one account."""

    admin: bool
    account_id: str | None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(
    conn: AsyncConnection, *, admin: bool, account_id: str | None, now: datetime
) -> str:
    if account_id is not None:
        exists = await conn.scalar(sa.select(accounts.c.id).where(accounts.c.id == account_id))
        if exists is None:
            raise NotFound(f"account {account_id} does not exist")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    await conn.execute(
        tokens.insert().values(
            id=new_id(),
            account_id=account_id,
            admin=admin,
            token_hash=hash_token(token),
            created_at=now,
            prefix=token[:PREFIX_LEN],
        )
    )
    return token


@dataclass(frozen=True, slots=True)
class RevokedToken:
    prefix: str
    admin: bool
    account_id: str | None
    revoked_at: datetime


async def revoke_token(
    conn: AsyncConnection, given: str, scope: str | None, now: datetime
) -> RevokedToken:
    """Revoke the token named by `given` (its prefix or whole value). `scope` None: the admin,
    any token; else only that account's. Revoking twice keeps the first time."""
    if len(given) < PREFIX_LEN:
        raise InvalidInput("prefix", f"give at least the token's first {PREFIX_LEN} characters")
    query = sa.select(tokens).where(
        sa.or_(tokens.c.token_hash == hash_token(given), tokens.c.prefix == given[:PREFIX_LEN])
    )
    if scope is not None:
        query = query.where(tokens.c.account_id == scope, tokens.c.admin.is_(False))
    rows = list(await conn.execute(query))
    exact = [r for r in rows if r.token_hash == hash_token(given)]
    rows = exact or rows
    if not rows:
        raise NotFound(f"no token {given[:PREFIX_LEN]}...")
    if len(rows) > 1:
        raise Conflict(f"{given[:PREFIX_LEN]} names several tokens; give the whole token")
    row = rows[0]
    revoked_at = row.revoked_at or now
    await conn.execute(tokens.update().where(tokens.c.id == row.id).values(revoked_at=revoked_at))
    return RevokedToken(row.prefix or given[:PREFIX_LEN], row.admin, row.account_id, revoked_at)


async def authenticate(conn: AsyncConnection, token: str, admin_token: str) -> Principal | None:
    if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
        return Principal(admin=True, account_id=None)
    row = (
        await conn.execute(
            sa.select(tokens.c.admin, tokens.c.account_id).where(
                tokens.c.token_hash == hash_token(token), tokens.c.revoked_at.is_(None)
            )
        )
    ).first()
    if row is None:
        return None
    return Principal(admin=bool(row.admin), account_id=row.account_id)


async def create_token_cli(config: Config, *, admin: bool, account_id: str | None) -> int:
    from calltracking.store.migrate import migrate

    db = Database(config.database_url)
    try:
        await migrate(db)
        async with db.write() as conn:
            token = await create_token(
                conn, admin=admin, account_id=account_id, now=datetime.now(UTC)
            )
    except NotFound as exc:
        print(f"calltracking: {exc.message}")
        return 1
    finally:
        await db.close()
    print(token)
    return 0


async def revoke_token_cli(config: Config, given: str) -> int:
    from calltracking.store.migrate import migrate

    db = Database(config.database_url)
    try:
        await migrate(db)
        async with db.write() as conn:
            revoked = await revoke_token(conn, given.strip(), None, datetime.now(UTC))
    except (NotFound, Conflict, InvalidInput) as exc:
        print(f"calltracking: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await db.close()
    owner = "admin" if revoked.admin else f"account {revoked.account_id}"
    print(f"revoked {revoked.prefix}... ({owner}) at {revoked.revoked_at.isoformat()}")
    return 0

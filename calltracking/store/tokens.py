"""API tokens: random, shown once, stored as SHA-256 hashes. The configured admin token
(`CALLTRACKING_ADMIN_TOKEN`) works without being stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.config import Config
from calltracking.core.errors import NotFound
from calltracking.store.db import Database
from calltracking.store.outbox import new_id
from calltracking.store.schema import accounts, tokens

TOKEN_PREFIX = "ct_"


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
        )
    )
    return token


async def authenticate(conn: AsyncConnection, token: str, admin_token: str) -> Principal | None:
    if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
        return Principal(admin=True, account_id=None)
    row = (
        await conn.execute(
            sa.select(tokens.c.admin, tokens.c.account_id).where(
                tokens.c.token_hash == hash_token(token)
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

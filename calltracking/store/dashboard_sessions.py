"""Dashboard sessions: a browser signs in once with an API token and then holds a random secret
in an HttpOnly cookie (web/api/session.py sets it and checks it).

Rules:
- The secret is 256 random bits; only its SHA-256 is stored, as for tokens.
- A session keeps the hash of the token it was opened with and authenticates that token again at
  every use: a token that stops being valid (deleted, or a changed CALLTRACKING_ADMIN_TOKEN)
  ends its sessions at once.
- A session lives SESSION_TTL from sign-in, not renewed by use; expired rows are removed at the
  next sign-in. Signing out deletes the row: a copied cookie is worthless afterwards.
- The CSRF token is an HMAC of the secret: no storage, and it dies with the session.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.store.ids import new_id
from calltracking.store.schema import dashboard_sessions, tokens
from calltracking.store.tokens import Principal, authenticate, hash_token

SESSION_TTL = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Session:
    principal: Principal
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Opened:
    secret: str  # for the cookie only; never stored or logged
    session: Session


def csrf_token(secret: str) -> str:
    return hmac.new(secret.encode(), b"calltracking-dashboard-csrf", hashlib.sha256).hexdigest()


async def open_session(
    conn: AsyncConnection, token: str, admin_token: str, now: datetime
) -> Opened | None:
    """A new session for a valid token; None when the token is not valid."""
    principal = await authenticate(conn, token, admin_token)
    if principal is None:
        return None
    await conn.execute(dashboard_sessions.delete().where(dashboard_sessions.c.expires_at <= now))
    secret = secrets.token_urlsafe(32)
    expires_at = now + SESSION_TTL
    await conn.execute(
        dashboard_sessions.insert().values(
            id=new_id(),
            secret_hash=hash_token(secret),
            token_hash=hash_token(token),
            created_at=now,
            expires_at=expires_at,
        )
    )
    return Opened(secret, Session(principal, expires_at))


async def find_session(
    conn: AsyncConnection, secret: str, admin_token: str, now: datetime
) -> Session | None:
    """The live session of a cookie's secret, with who it acts as today; None otherwise."""
    row = (
        await conn.execute(
            sa.select(dashboard_sessions.c.token_hash, dashboard_sessions.c.expires_at).where(
                dashboard_sessions.c.secret_hash == hash_token(secret)
            )
        )
    ).first()
    if row is None or row.expires_at <= now:
        return None
    principal = await _principal_of(conn, row.token_hash, admin_token)
    return None if principal is None else Session(principal, row.expires_at)


async def end_session(conn: AsyncConnection, secret: str) -> bool:
    result = await conn.execute(
        dashboard_sessions.delete().where(dashboard_sessions.c.secret_hash == hash_token(secret))
    )
    return bool(result.rowcount)


async def _principal_of(
    conn: AsyncConnection, token_hash: str, admin_token: str
) -> Principal | None:
    if admin_token and hmac.compare_digest(token_hash, hash_token(admin_token)):
        return Principal(admin=True, account_id=None)
    row = (
        await conn.execute(
            sa.select(tokens.c.admin, tokens.c.account_id).where(tokens.c.token_hash == token_hash)
        )
    ).first()
    return None if row is None else Principal(admin=bool(row.admin), account_id=row.account_id)

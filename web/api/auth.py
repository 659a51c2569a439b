"""Bearer tokens and who may call what.

Rules:
- No `Authorization: Bearer <token>` header, or a token nobody issued: 401 `unauthorized`.
- `admin` endpoints refuse account tokens with 403 `forbidden`.
- Account tokens see only their account's objects; anything else answers 404, exactly as an id
  that does not exist (handlers filter by `Ctx.scope`).
- The configured admin token works without being stored; stored tokens are checked by hash.
- Without an Authorization header, the dashboard's session cookie stands for the token it was
  opened with, and state-changing methods need its CSRF header (web/api/session.py).
"""

from __future__ import annotations

from enum import StrEnum

from aiohttp import web

from calltracking.services import Services
from calltracking.store.tokens import Principal, authenticate
from web.api.errors import Forbidden, Unauthorized
from web.api.session import session_principal, uses_session


class Access(StrEnum):
    ADMIN = "admin"  # the admin token only
    ANY = "any"  # the admin or an account token
    SIGNED = "signed"  # a signed URL, else any token (the handler decides)
    PUBLIC = "public"  # no token (the OpenAPI document)


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send Authorization: Bearer <token>")
    token = token.strip()
    # Tokens are printable ASCII; anything else (a header that was not UTF-8 arrives with
    # surrogate escapes) is no token, and must not reach `encode()`.
    if not token.isascii() or not token.isprintable() or len(token) > 512:
        raise Unauthorized("the token is not valid")
    return token


async def authorize(request: web.Request, services: Services, access: Access) -> Principal:
    if uses_session(request):
        principal: Principal | None = await session_principal(request, services)
    else:
        token = bearer_token(request)
        async with services.db.read() as conn:
            principal = await authenticate(conn, token, services.config.admin_token)
    if principal is None:
        raise Unauthorized("the token is not valid")
    if access is Access.ADMIN and not principal.admin:
        raise Forbidden("this endpoint needs the admin token")
    return principal

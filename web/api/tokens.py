"""`DELETE /api/v1/tokens/{prefix}`: revoke a token at once (`store.tokens.revoke_token`).

The admin may revoke any stored token; an account token only its own account's, and any other
answers 404 exactly as a prefix nobody issued.
"""

from __future__ import annotations

from aiohttp import web

from calltracking.store.tokens import revoke_token
from web.api.context import Ctx


async def revoke_token_handler(ctx: Ctx) -> web.StreamResponse:
    async with ctx.services.db.write() as conn:
        revoked = await revoke_token(conn, ctx.path("prefix"), ctx.scope, ctx.now())
    return web.json_response(
        {
            "prefix": revoked.prefix,
            "admin": revoked.admin,
            "account_id": revoked.account_id,
            "revoked_at": revoked.revoked_at.isoformat(),
        }
    )

"""`GET /api/v1/account`: who the token is: the admin, or one account with its time zone (the
dashboard shows times and builds date ranges in it)."""

from __future__ import annotations

from aiohttp import web

from calltracking.store.sites import get_account
from web.api.context import Ctx


async def who_am_i(ctx: Ctx) -> web.StreamResponse:
    if ctx.scope is None:
        return web.json_response({"admin": True, "account": None})
    async with ctx.services.db.read() as conn:
        account = await get_account(conn, ctx.scope)
    assert account is not None  # a token's account outlives it (ON DELETE CASCADE)
    return web.json_response(
        {
            "admin": False,
            "account": {
                "id": account.id,
                "name": account.name,
                "timezone": account.timezone,
                "max_numbers": account.max_numbers,
                "retention_days": account.retention_days,
            },
        }
    )

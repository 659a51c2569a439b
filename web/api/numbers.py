"""Numbers: the reserve (admin), and moving numbers between the reserve and a site's pool.

Moves are all or nothing; a 409 names what could not be had. A number returned to the reserve
cools down for the site's `cooldown_days`; meanwhile only that site may take it back.
"""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web

from calltracking.core.errors import Conflict, InvalidInput
from calltracking.store.number_moves import (
    account_numbers_in_use,
    add_to_reserve,
    move_from_reserve,
    release_to_reserve,
)
from calltracking.store.queries import pool_states, site_changes
from calltracking.store.sites import get_account
from web.api import validation as v
from web.api.context import Ctx
from web.api.sites import owned_site


async def add_numbers(ctx: Ctx) -> web.StreamResponse:
    body = await v.read_object(ctx.request)
    v.check_fields(body, required=("numbers",))
    wanted = v.e164_list(body["numbers"], "numbers")
    async with ctx.services.db.write() as conn:
        added, present = await add_to_reserve(conn, wanted, ctx.now())
    return web.json_response({"added": added, "already_present": present})


async def list_numbers(ctx: Ctx) -> web.StreamResponse:
    async with ctx.services.db.read() as conn:
        numbers = await pool_states.all_numbers(conn, ctx.now())
    return web.json_response({"numbers": numbers})


async def add_site_numbers(ctx: Ctx) -> web.StreamResponse:
    body = await v.read_object(ctx.request)
    if "count" in body and "numbers" in body:
        raise InvalidInput("numbers", "give either count or numbers, not both")
    v.check_fields(body, required=("numbers",) if "numbers" in body else ("count",))
    count = v.integer(body["count"], "count", low=1, high=1000) if "count" in body else None
    wanted = v.e164_list(body["numbers"], "numbers") if "numbers" in body else None
    async with ctx.services.db.write() as conn:
        site = await owned_site(ctx, conn)
        account = await get_account(conn, site.account_id)
        assert account is not None
        size = await pool_states.pool_size(conn, site.id)
        asked = count if count is not None else len(set(wanted or ()))
        if size + asked > site.settings.pool_max:
            raise Conflict(
                f"the pool has {size} numbers; {asked} more would exceed pool_max "
                f"{site.settings.pool_max}"
            )
        capacity = account.max_numbers - await account_numbers_in_use(conn, account.id)
        moved = await move_from_reserve(
            conn,
            site,
            count=count,
            wanted=list(dict.fromkeys(wanted)) if wanted is not None else None,
            account_capacity=capacity,
            now=ctx.now(),
        )
    return web.json_response({"added": moved, "pool_size": size + len(moved)})


async def remove_site_number(ctx: Ctx) -> web.StreamResponse:
    """A static number leaves `settings.static` too; a number the account brought itself leaves
    the system (state `removed`), one from the reserve goes back to it, cooling."""
    e164 = v.e164(ctx.path("e164"), "e164")
    async with ctx.services.db.write() as conn:
        site = await owned_site(ctx, conn)
        if e164 in site.settings.static:
            static = {n: label for n, label in site.settings.static.items() if n != e164}
            await site_changes.update_site(
                conn,
                site,
                name=None,
                domains=None,
                defaults=None,
                settings=replace(site.settings, static=static),
                now=ctx.now(),
            )
        else:
            await release_to_reserve(conn, site, e164, ctx.now())
        rows = await pool_states.all_numbers(conn, ctx.now(), e164)
    return web.json_response(rows[0] if rows else {"e164": e164, "state": "removed"})


async def site_pool(ctx: Ctx) -> web.StreamResponse:
    async with ctx.services.db.read() as conn:
        site = await owned_site(ctx, conn)
        numbers = await pool_states.site_pool(conn, site, ctx.now())
    return web.json_response({"site_id": site.id, "numbers": numbers})

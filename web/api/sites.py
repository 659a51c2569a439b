"""Sites: create, list, read, PATCH (settings merged key by key, analytics targets replaced
whole, static numbers claimed or released, pool shrunk to a lowered pool_max) and DELETE (open
sockets closed with 4410, active leases ended, numbers back to the reserve cooling; calls kept)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core.errors import InvalidInput, NotFound
from calltracking.core.settings import SiteSettings, merge_settings, settings_to_json
from calltracking.store.queries import site_changes
from calltracking.store.sites import Account, Site, get_account, get_site, list_sites, top_up_pool
from calltracking.store.sites import create_site as store_create_site
from web.api import validation as v
from web.api.context import Ctx
from web.api.masked import keep_stored_secrets
from web.keys import HUB

DEFAULT_KINDS = ("initial", "expired", "untracked")
_DOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$"
)


def site_json(ctx: Ctx, site: Site) -> dict[str, Any]:
    base = ctx.services.config.public_url.rstrip("/") or str(ctx.request.url.origin())
    return {
        "id": site.id,
        "account_id": site.account_id,
        "key": site.key,
        "name": site.name,
        "domains": list(site.domains),
        "defaults": {str(kind): e164 for kind, e164 in site.defaults.items()},
        "settings": settings_to_json(site.settings),
        "created_at": site.created_at.isoformat(),
        "snippet": f'<script src="{base}/snippet.js" data-site="{site.key}" async></script>',
    }


async def owned_site(ctx: Ctx, conn: AsyncConnection) -> Site:
    site_id = ctx.path("site_id")
    site = await get_site(conn, site_id)
    if (
        site is None
        or site.deleted_at is not None
        or (ctx.scope is not None and site.account_id != ctx.scope)
    ):
        raise NotFound(f"site {site_id} does not exist")
    return site


def _domains(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or len(value) > 50:
        raise InvalidInput("domains", "must be a list of 1 to 50 host names")
    result = []
    for i, item in enumerate(value):
        name = item.strip().lower().rstrip(".") if isinstance(item, str) else ""
        if not _DOMAIN.match(name):
            raise InvalidInput(f"domains[{i}]", "must be a host name such as shop.example")
        result.append(name)
    return result


def _defaults(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise InvalidInput("defaults", "must be an object {initial, expired, untracked}")
    v.check_fields(value, required=DEFAULT_KINDS, prefix="defaults.")
    return {kind: v.e164(value[kind], f"defaults.{kind}") for kind in DEFAULT_KINDS}


def _within_account(settings: SiteSettings, account: Account) -> SiteSettings:
    if settings.pool_max > account.max_numbers:
        raise InvalidInput(
            "settings.pool_max", f"must be within the account's max_numbers {account.max_numbers}"
        )
    return settings


async def create_site(ctx: Ctx) -> web.StreamResponse:
    body = await v.read_object(ctx.request)
    admin_only = ("account_id",) if ctx.who.admin else ()
    v.check_fields(
        body,
        required=("name", "domains", "defaults", *admin_only),
        optional=("settings",),
    )
    account_id = v.text(body["account_id"], "account_id", max_len=40) if admin_only else ctx.scope
    assert account_id is not None
    name, domains, defaults = (
        v.text(body["name"], "name"),
        _domains(body["domains"]),
        _defaults(body["defaults"]),
    )
    fresh = SiteSettings()
    settings = merge_settings(
        fresh,
        keep_stored_secrets(body.get("settings", {}), fresh.analytics),
        allow_private_webhooks=ctx.services.config.webhook_allow_private,
    )
    async with ctx.services.db.write() as conn:
        account = await get_account(conn, account_id)
        if account is None:
            raise InvalidInput("account_id", f"account {account_id} does not exist")
        site = await store_create_site(
            conn,
            account_id=account_id,
            name=name,
            domains=domains,
            defaults=defaults,
            settings=_within_account(settings, account),
            now=ctx.now(),
        )
        await top_up_pool(conn, site, ctx.now())
    return web.json_response(site_json(ctx, site), status=201)


async def list_sites_handler(ctx: Ctx) -> web.StreamResponse:
    async with ctx.services.db.read() as conn:
        sites = await list_sites(conn, ctx.scope)
    return web.json_response({"sites": [site_json(ctx, s) for s in sites]})


async def get_site_handler(ctx: Ctx) -> web.StreamResponse:
    async with ctx.services.db.read() as conn:
        site = await owned_site(ctx, conn)
    return web.json_response(site_json(ctx, site))


async def patch_site(ctx: Ctx) -> web.StreamResponse:
    body = await v.read_object(ctx.request)
    v.check_fields(body, optional=("name", "domains", "defaults", "settings"))
    name = v.text(body["name"], "name") if "name" in body else None
    domains = _domains(body["domains"]) if "domains" in body else None
    defaults = _defaults(body["defaults"]) if "defaults" in body else None
    async with ctx.services.db.write() as conn:
        site = await owned_site(ctx, conn)
        patch = keep_stored_secrets(body.get("settings", {}), site.settings.analytics)
        settings = merge_settings(
            site.settings, patch, allow_private_webhooks=ctx.services.config.webhook_allow_private
        )
        account = await get_account(conn, site.account_id)
        assert account is not None
        site = await site_changes.update_site(
            conn,
            site,
            name=name,
            domains=domains,
            defaults=defaults,
            settings=_within_account(settings, account),
            now=ctx.now(),
        )
        await top_up_pool(conn, site, ctx.now())
    return web.json_response(site_json(ctx, site))


async def delete_site(ctx: Ctx) -> web.StreamResponse:
    async with ctx.services.db.write() as conn:
        site = await owned_site(ctx, conn)
        effects = await site_changes.delete_site(conn, site, ctx.now())
    # This node's tabs close now; other nodes close theirs on the lease.released events.
    await ctx.request.app[HUB].close_site(site.id)
    return web.json_response({"id": site.id, "deleted": True, **effects})

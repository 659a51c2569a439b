"""Accounts (admin) and an account's leads (admin or the account itself)."""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from aiohttp import web

from calltracking.core.errors import InvalidInput, NotFound
from calltracking.core.reports.localtime import parse_month
from calltracking.store import schema as t
from calltracking.store.queries.leads import month_lead_calls
from calltracking.store.sites import create_account as store_create_account
from calltracking.store.sites import get_account
from calltracking.store.tokens import create_token
from web.api import validation as v
from web.api.calls import with_recording_urls
from web.api.context import Ctx

_MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")


def _timezone(value: Any) -> str:
    name = v.text(value, "timezone", max_len=64)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput("timezone", f"{name!r} is not an IANA time zone") from None
    return name


async def create_account(ctx: Ctx) -> web.StreamResponse:
    body = await v.read_object(ctx.request)
    v.check_fields(body, required=("name",), optional=("timezone", "max_numbers", "retention_days"))
    name = v.text(body["name"], "name")
    timezone = _timezone(body.get("timezone", "Europe/Moscow"))
    max_numbers = v.integer(body.get("max_numbers", 50), "max_numbers", low=0, high=100_000)
    retention = v.integer(body.get("retention_days", 365), "retention_days", low=1, high=36_500)
    async with ctx.services.db.write() as conn:
        account = await store_create_account(
            conn,
            name,
            ctx.now(),
            timezone=timezone,
            max_numbers=max_numbers,
            retention_days=retention,
        )
        token = await create_token(conn, admin=False, account_id=account.id, now=ctx.now())
    return web.json_response({**_account_json(account), "token": token}, status=201)


def _account_json(account: Any) -> dict[str, Any]:
    return {
        "id": account.id,
        "name": account.name,
        "timezone": account.timezone,
        "max_numbers": account.max_numbers,
        "retention_days": account.retention_days,
    }


async def list_accounts(ctx: Ctx) -> web.StreamResponse:
    async with ctx.services.db.read() as conn:
        rows = await conn.execute(sa.select(t.accounts).order_by(t.accounts.c.created_at))
        accounts = [_account_json(r) for r in rows]
    return web.json_response({"accounts": accounts})


async def account_leads(ctx: Ctx) -> web.StreamResponse:
    account_id = ctx.path("account_id")
    if ctx.scope is not None and ctx.scope != account_id:
        raise NotFound(f"account {account_id} does not exist")
    month = ctx.request.query.get("month")
    if month is None:
        raise InvalidInput("month", "is required (YYYY-MM)")
    if not _MONTH.fullmatch(month) or not v.MIN_YEAR <= int(month[:4]) <= v.MAX_YEAR:
        raise InvalidInput("month", f"must be YYYY-MM, years {v.MIN_YEAR} to {v.MAX_YEAR}")
    parse_month(month)
    async with ctx.services.db.read() as conn:
        account = await get_account(conn, account_id)
        if account is None:
            raise NotFound(f"account {account_id} does not exist")
        calls = await month_lead_calls(conn, account_id, month)
    return web.json_response(
        {
            "account_id": account_id,
            "month": month,
            "timezone": account.timezone,
            "leads": len(calls),
            "calls": with_recording_urls(ctx, calls),
        }
    )

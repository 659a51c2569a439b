"""Call qualification: the account's tags and its target-call rule (`/api/v1/qualification`),
and tags set on one call (through `PATCH /api/v1/calls/{id}`, see `calls.py`).

Rules: an account token works on its own account; the admin names the account with `?account=`.
Tags on a call must be defined by the call's account first (422 naming the unknown ones).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from calltracking.core.errors import InvalidInput, NotFound
from calltracking.core.qualification import (
    MAX_TAGS_PER_ACCOUNT,
    MAX_TARGET_TALK_S,
    canonical_tags,
    clean_tag,
)
from calltracking.store.queries import qualification as q
from calltracking.store.sites import get_account
from web.api import validation as v
from web.api.context import Ctx


async def _account_id(ctx: Ctx, conn: Any) -> str:
    wanted = ctx.request.query.get("account")
    if ctx.scope is None and wanted is None:
        raise InvalidInput("account", "is required with the admin token (the account's id)")
    account_id = wanted or ctx.scope
    assert account_id is not None
    if (ctx.scope is not None and account_id != ctx.scope) or await get_account(
        conn, account_id
    ) is None:
        raise NotFound(f"account {account_id} does not exist")
    return account_id


def _json(found: q.Qualification) -> dict[str, Any]:
    return {
        "account_id": found.account_id,
        "tags": found.tags,
        "target_call_talk_s": found.target_call_talk_s,
    }


async def get_qualification(ctx: Ctx) -> web.StreamResponse:
    async with ctx.services.db.read() as conn:
        found = await q.load(conn, await _account_id(ctx, conn))
    return web.json_response(_json(found))


def tag_list(value: Any, field: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise InvalidInput(field, "must be a list of strings")
    if len(value) > MAX_TAGS_PER_ACCOUNT:
        raise InvalidInput(field, f"at most {MAX_TAGS_PER_ACCOUNT} tags")
    out: list[str] = []
    for i, raw in enumerate(value):
        tag = clean_tag(raw)
        if tag is None:
            raise InvalidInput(f"{field}[{i}]", "a tag is 1 to 40 printable characters")
        if tag.casefold() not in {t.casefold() for t in out}:
            out.append(tag)
    return out


async def put_qualification(ctx: Ctx) -> web.StreamResponse:
    body = await v.read_object(ctx.request)
    v.check_fields(body, optional=("tags", "target_call_talk_s"))
    tags = tag_list(body["tags"], "tags") if "tags" in body else None
    rule = body.get("target_call_talk_s")
    if rule is not None:
        rule = v.integer(rule, "target_call_talk_s", low=1, high=MAX_TARGET_TALK_S)
    async with ctx.services.db.write() as conn:
        account_id = await _account_id(ctx, conn)
        if tags is not None:
            await q.replace_tags(conn, account_id, tags, ctx.now())
        if "target_call_talk_s" in body:
            await q.set_rule(conn, account_id, rule)
        found = await q.load(conn, account_id)
    return web.json_response(_json(found))


async def call_tags(conn: Any, account_id: str | None, value: Any) -> list[str]:
    """The tags to set on a call of `account_id`, as the account spells them."""
    wanted = tag_list(value, "tags")
    defined = await q.account_tags(conn, account_id) if account_id else []
    known, unknown = canonical_tags(wanted, defined)
    if unknown:
        raise InvalidInput(
            "tags", f"not defined for this account: {', '.join(unknown)} (add them first)"
        )
    return known

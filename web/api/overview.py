"""`GET /api/v1/overview`: a site's or an account's calls, tracked share, leads, missed calls and
top sources for a period (`period=today|7d|30d`, or `since`/`until`), with the period before it.

Rules: `site` narrows to one site (the account's own); the admin may name an `account`, and sees
everyone's calls without one (days then in UTC). Presets and days are in the account's zone.
"""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from calltracking.core.errors import InvalidInput, NotFound
from calltracking.core.reports import overview as ov
from calltracking.store.queries.leads import account_zone
from calltracking.store.queries.overview import overview_calls
from calltracking.store.sites import get_account, get_site
from web.api import validation as v
from web.api.context import Ctx

MAX_WINDOW = timedelta(days=400)


async def _scope(ctx: Ctx, conn: Any) -> tuple[str | None, str | None]:
    """(account id, site id) the overview counts; NotFound for anything not the token's."""
    q = ctx.request.query
    site_id, account_id = q.get("site") or None, q.get("account") or ctx.scope
    if ctx.scope is not None and account_id != ctx.scope:
        raise NotFound(f"account {account_id} does not exist")
    if site_id is not None:
        site = await get_site(conn, site_id)
        if (
            site is None
            or site.deleted_at is not None
            or (account_id is not None and site.account_id != account_id)
        ):
            raise NotFound(f"site {site_id} does not exist")
        return site.account_id, site_id
    if account_id is not None and await get_account(conn, account_id) is None:
        raise NotFound(f"account {account_id} does not exist")
    return account_id, None


async def get_overview(ctx: Ctx) -> web.StreamResponse:
    preset = v.choice(ctx.request, "period", list(ov.PRESETS))
    since, until = v.timestamp(ctx.request, "since"), v.timestamp(ctx.request, "until")
    if preset is not None and (since or until):
        raise InvalidInput("period", "give a period or since/until, not both")
    async with ctx.services.db.read() as conn:
        account_id, site_id = await _scope(ctx, conn)
        tz = await account_zone(conn, account_id) if account_id else ZoneInfo("UTC")
        if since is None or until is None:
            if since or until:
                raise InvalidInput("since" if since is None else "until", "give both or neither")
            since, until = ov.preset_window(preset or "7d", ctx.now(), tz)
        if since >= until:
            raise InvalidInput("until", "must be later than since")
        if until - since > MAX_WINDOW:
            raise InvalidInput("since", "the window may be at most 400 days")
        before = ov.previous_window(since, until)
        scope = {"account_id": account_id, "site_id": site_id}
        calls, targets = await overview_calls(conn, **scope, since=since, until=until)
        old, old_targets = await overview_calls(conn, **scope, since=before[0], until=before[1])
    now, then = ov.period_figures(calls, targets), ov.period_figures(old, old_targets)
    return web.json_response(
        {
            **scope,
            "timezone": str(tz),
            "period": {"preset": preset, "since": _iso(since), "until": _iso(until)},
            "previous": {"since": _iso(before[0]), "until": _iso(before[1])},
            "figures": now.to_json(),
            "previous_figures": then.to_json(),
            "trend": ov.trends(now, then),
            "top_sources": ov.top_sources(calls, old),
            "per_day": ov.per_day(calls, since, until, tz),
            "previous_per_day": ov.per_day(old, *before, tz),
        }
    )


def _iso(moment: Any) -> str:
    return str(moment.astimezone(UTC).isoformat())

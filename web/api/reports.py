"""A site's report for [since, until): the store gathers calls, visits, displays and pool facts,
`core.reports.build_report` computes every figure.

Defaults where the contract is silent: `until` is now, `since` 30 days before `until`; a window
is at most MAX_WINDOW_DAYS long.
"""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from calltracking.core.errors import InvalidInput
from calltracking.core.reports import build_report
from calltracking.store.queries.leads import account_zone
from calltracking.store.queries.report_inputs import report_inputs
from web.api import validation as v
from web.api.context import Ctx
from web.api.sites import owned_site

DEFAULT_WINDOW = timedelta(days=30)
MAX_WINDOW_DAYS = 400


async def site_report(ctx: Ctx) -> web.StreamResponse:
    until = v.timestamp(ctx.request, "until") or ctx.now()
    since = v.timestamp(ctx.request, "since") or until - DEFAULT_WINDOW
    if since >= until:
        raise InvalidInput("until", "must be later than since")
    if until - since > timedelta(days=MAX_WINDOW_DAYS):
        raise InvalidInput("since", f"the window may be at most {MAX_WINDOW_DAYS} days")
    async with ctx.services.db.read() as conn:
        site = await owned_site(ctx, conn)
        tz = await account_zone(conn, site.account_id)
        inputs = await report_inputs(conn, site, since, until)
    report = build_report(
        inputs.calls, inputs.visits, inputs.displays, inputs.pool, site.settings, since, until, tz
    )
    return web.json_response({"site_id": site.id, **report.to_json()})

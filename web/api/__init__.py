"""The operator HTTP API (CONTRACT.md, "Operator HTTP API") under /api/v1.

routes      the route table: path, handler, access, query parameters, schemas
auth        Bearer tokens, admin vs account
errors      the error body and its stable codes; the middleware that writes it
validation  strict checks naming the field; the 64 KiB body limit; cursors
accounts, numbers, sites, calls, recordings, reports   the handlers
call_feed   the live calls feed (server-sent events fed by the bus's `call.*`)
qualification, overview, test_events, whoami   the dashboard product's handlers
product_schemas   their JSON schemas
openapi     the OpenAPI 3.1 document, built from the route table
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from calltracking.quiet_log import QuietLog
from web.api.auth import Access, authorize
from web.api.call_feed import setup_call_feed
from web.api.context import Ctx
from web.api.errors import OUTAGE_LOG, api_errors, log
from web.api.routes import ROUTES, Route
from web.api.validation import check_path, check_query
from web.keys import SERVICES


def setup_api(app: web.Application) -> None:
    app.middlewares.append(api_errors)
    app[OUTAGE_LOG] = QuietLog(log, "API: database unavailable")
    setup_call_feed(app)
    for route in ROUTES:
        app.router.add_route(route.method, route.path, _endpoint(route))


def _endpoint(route: Route) -> Handler:
    allowed = {p.name for p in route.query}

    async def handle(request: web.Request) -> web.StreamResponse:
        services = request.app[SERVICES]
        principal = None
        if route.access in (Access.ADMIN, Access.ANY):
            principal = await authorize(request, services, route.access)
        check_query(request, allowed)
        check_path(request)
        return await route.handler(Ctx(request, services, principal))

    handle.__name__ = route.handler.__name__
    return handle

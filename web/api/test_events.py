"""`POST /api/v1/sites/{site_id}/test-event`: send one test event to one of the site's analytics
targets (`ga4`, `metrika`, or `webhook` with its `index`) and answer what the target said.

Rules: a target the site has not configured is a 422 naming `target` (or `index`); the answer is
200 whatever the target did, with `ok` and the sender's detail, since the request itself worked.
"""

from __future__ import annotations

import logging

import aiohttp
from aiohttp import web

from calltracking.core.errors import InvalidInput
from calltracking.core.settings import Ga4Target, MetrikaTarget, WebhookTarget
from calltracking.exporters.outcome import Hopeless, RetryLater, Sent, Skipped
from calltracking.exporters.targets import webhook_session
from calltracking.exporters.test_event import send_test
from web.api import validation as v
from web.api.context import Ctx
from web.api.sites import owned_site

log = logging.getLogger(__name__)
TARGETS = ("ga4", "metrika", "webhook")


async def send_test_event(ctx: Ctx) -> web.StreamResponse:
    body = await v.read_object(ctx.request)
    v.check_fields(body, required=("target",), optional=("index",))
    kind = body["target"]
    if kind not in TARGETS:
        raise InvalidInput("target", f"must be one of {', '.join(TARGETS)}")
    async with ctx.services.db.read() as conn:
        site = await owned_site(ctx, conn)
    analytics = site.settings.analytics
    target: Ga4Target | MetrikaTarget | WebhookTarget | None
    if kind == "webhook":
        hooks = analytics.webhooks
        index = v.integer(body.get("index", 0), "index", low=0, high=max(0, len(hooks) - 1))
        target = hooks[index] if hooks else None
    else:
        target = analytics.ga4 if kind == "ga4" else analytics.metrika
    if target is None:
        raise InvalidInput("target", f"the site has no {kind} target configured")
    config = ctx.services.config
    # Webhook URLs come from tenants: the same guarded session as deliveries (no private or
    # loopback targets unless the operator allows them, checked on the connected address).
    session = (
        webhook_session(allow_private=config.webhook_allow_private)
        if kind == "webhook"
        else aiohttp.ClientSession()
    )
    async with session:
        outcome = await send_test(
            session,
            target,
            site_id=site.id,
            now=ctx.now(),
            ga4_endpoint=config.ga4_endpoint,
            metrika_endpoint=config.metrika_endpoint,
        )
    ok = isinstance(outcome, Sent)
    detail = outcome.detail if isinstance(outcome, Sent) else outcome.reason
    log.info("site %s: test event to %s: %s", site.id, kind, "sent" if ok else "failed")
    state = {Sent: "sent", RetryLater: "retry_later", Hopeless: "failed", Skipped: "skipped"}
    return web.json_response(
        {"target": kind, "ok": ok, "outcome": state[type(outcome)], "detail": detail}
    )

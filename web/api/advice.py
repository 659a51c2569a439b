"""`GET /api/v1/sites/{id}/advice?target=0.95&days=7`: pool sizing from the site's own traffic,
replayed through the simulator (`calltracking.advise`). Query values are checked here; the
replay runs in a worker thread."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from calltracking.advise import DEFAULT_DAYS, MAX_DAYS, site_advice
from calltracking.core.errors import InvalidInput
from web.api.context import Ctx
from web.api.sites import owned_site

DEFAULT_TARGET = 0.95

ADVICE: dict[str, Any] = {
    "type": "object",
    "required": ["site_id", "target", "traffic", "current", "advice", "candidates", "limits"],
    "properties": {
        "site_id": {"type": "string"},
        "target": {"type": "number"},
        "advice": {
            "type": "object",
            "required": [
                "pool",
                "show_delay_s",
                "idle_timeout_s",
                "hold_s",
                "tracked_share",
                "correct_share",
                "reached",
            ],
        },
        "limits": {"type": "array", "items": {"type": "string"}},
    },
}
TARGET_PARAM = (
    {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": DEFAULT_TARGET},
    "the tracked share to reach",
)
DAYS_PARAM = (
    {"type": "integer", "minimum": 1, "maximum": MAX_DAYS, "default": DEFAULT_DAYS},
    "days of traffic to replay",
)


async def site_advice_handler(ctx: Ctx) -> web.StreamResponse:
    target = _number(ctx.request.query.get("target"), "target", DEFAULT_TARGET)
    days = _whole(ctx.request.query.get("days"), "days", DEFAULT_DAYS)
    async with ctx.services.db.read() as conn:
        site = await owned_site(ctx, conn)
    answer = await site_advice(ctx.services.db, site, target=target, days=days, now=ctx.now())
    return web.json_response(answer)


def _number(raw: str | None, name: str, default: float) -> float:
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise InvalidInput(name, "must be a number") from None


def _whole(raw: str | None, name: str, default: int) -> int:
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput(name, "must be a whole number") from None

"""The aiohttp application factory: one app, one cleanup context per background duty."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from calltracking.services import Services
from web.hub import Hub
from web.keys import HUB, SERVICES
from web.ws import visitor_socket

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")
TOUCH_INTERVAL_S = 30.0


def create_app(services: Services) -> web.Application:
    app = web.Application(client_max_size=256 * 1024)
    app[SERVICES] = services
    app[HUB] = Hub(services.visitors, services.clock)
    app.router.add_get("/ws", visitor_socket)
    app.router.add_get("/snippet.js", snippet)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    _add_optional_routes(app)
    if services.demo is not None:
        from web.demo import setup_demo

        setup_demo(app, services.demo)
    app.cleanup_ctx.append(_lease_updates)
    app.cleanup_ctx.append(_sweeper)
    app.on_shutdown.append(_close_sockets)
    services.health.parts["web"] = lambda: True
    return app


def _add_optional_routes(app: web.Application) -> None:
    """The operator API and pages register themselves when present."""
    with contextlib.suppress(ImportError):
        from web.api import setup_api

        setup_api(app)
    with contextlib.suppress(ImportError):
        from web.pages import setup_pages

        setup_pages(app)


async def snippet(request: web.Request) -> web.StreamResponse:
    response = web.FileResponse(STATIC / "snippet.js")
    response.headers["Content-Type"] = "application/javascript; charset=utf-8"
    response.headers["Cache-Control"] = "public, max-age=300"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


async def favicon(request: web.Request) -> web.StreamResponse:
    """Every page (dashboard, demo, API in a browser) gets an icon instead of a 404."""
    response = web.FileResponse(STATIC / "favicon.ico")
    response.headers["Content-Type"] = "image/x-icon"
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


async def healthz(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    parts = services.health.report()
    parts["database"] = await services.db.ping()
    ok = all(parts.values())
    return web.json_response(
        {"status": "ok" if ok else "down", "parts": parts}, status=200 if ok else 503
    )


async def metrics(request: web.Request) -> web.Response:
    services, hub = request.app[SERVICES], request.app[HUB]
    lines = [
        "# HELP calltracking_ws_tabs Open visitor tabs on this node.",
        "# TYPE calltracking_ws_tabs gauge",
        f"calltracking_ws_tabs {len(hub)}",
        "# HELP calltracking_number_frames_total Number frames sent to tabs.",
        "# TYPE calltracking_number_frames_total counter",
        f"calltracking_number_frames_total {hub.pushed}",
    ]
    for name, up in services.health.report().items():
        lines.append(f'calltracking_part_up{{part="{name}"}} {int(up)}')
    for metric, read in services.health.counters.items():
        lines.append(f"# TYPE calltracking_{metric} counter")
        for label, value in read().items():
            lines.append(f'calltracking_{metric}{{outcome="{label}"}} {value:g}')
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


async def _lease_updates(app: web.Application) -> AsyncIterator[None]:
    """Changes decided on any node (bus `lease.*`, `pool.*`) reach this node's tabs."""
    services, hub = app[SERVICES], app[HUB]
    subscription = await services.bus.subscribe(
        None, ["lease.#", "pool.#"], hub.on_event, durable=False
    )
    yield
    await subscription.close()


async def _sweeper(app: web.Application) -> AsyncIterator[None]:
    """Apply due times (show delay, idle revocation, vanished tabs) and keep our tabs alive.
    On shutdown the loop finishes its round rather than being cancelled inside a transaction."""
    services, hub = app[SERVICES], app[HUB]
    stopping = asyncio.Event()

    async def sweep_forever() -> None:
        last_touch = 0.0
        loop = asyncio.get_running_loop()
        while not stopping.is_set():
            try:
                if loop.time() - last_touch >= TOUCH_INTERVAL_S:
                    await services.visitors.touch_tabs(hub.tab_ids(), services.clock())
                    last_touch = loop.time()
                changed = await services.visitors.sweep(services.clock())
                await hub.refresh(changed)
            except Exception:
                log.exception("lease sweep failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), services.sweep_interval_s)

    task = asyncio.create_task(sweep_forever(), name="lease-sweeper")
    services.health.parts["sweeper"] = lambda: not task.done()
    yield
    stopping.set()
    try:
        await asyncio.wait_for(task, 5.0)
    except TimeoutError:
        log.warning("lease sweeper did not stop in time; cancelled")


async def _close_sockets(app: web.Application) -> None:
    await app[HUB].close_all()

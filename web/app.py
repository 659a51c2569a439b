"""The aiohttp application factory: one app, one cleanup context per background duty."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from calltracking.bus.wake import sleep_until
from calltracking.quiet_log import QuietLog
from calltracking.services import Services
from calltracking.store.site_cache import SiteCache
from calltracking.store.sites import Site, get_site_by_key
from web.hub import Hub
from web.keys import HUB, SERVICES, SITES
from web.ws import visitor_socket

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")
TOUCH_INTERVAL_S = 30.0
SWEEP_IDLE_S = 10.0  # the sweep looks for unloaded sites (10 s) and vanished tabs (30 s)


def create_app(services: Services) -> web.Application:
    app = web.Application(client_max_size=256 * 1024)
    app[SERVICES] = services
    app[HUB] = Hub(services.visitors, services.clock)

    async def site_by_key(key: str) -> Site | None:
        async with services.db.read() as conn:
            return await get_site_by_key(conn, key)

    app[SITES] = SiteCache(site_by_key)
    app.router.add_get("/ws", visitor_socket)
    app.router.add_get("/snippet.js", snippet)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/livez", livez)
    app.router.add_get("/metrics", metrics)
    _add_optional_routes(app)
    if services.demo is not None:
        from web.demo import setup_demo

        setup_demo(app, services.demo)
    app.cleanup_ctx.append(_lease_updates)
    app.cleanup_ctx.append(_sweeper)
    app.on_shutdown.append(_close_sockets)
    services.health.parts["web"] = lambda: True
    hub = app[HUB]
    services.metrics.read_gauge(
        "calltracking_ws_tabs", "Open visitor tabs on this node.", hub.__len__
    )
    services.metrics.read_counter(
        "calltracking_number_frames", "Number frames sent to tabs.", lambda: hub.pushed
    )
    services.metrics.read_counter(
        "calltracking_decider_batches",
        "Group commits of visitor changes decided on this node (hellos per batch: the rate of "
        "calltracking_hello_seconds_count over this one).",
        lambda: services.visitors.batches,
    )
    return app


def create_ops_app(services: Services) -> web.Application:
    """Health and metrics only, for a process without the web part (CALLTRACKING_METRICS_PORT)."""
    app = web.Application()
    app[SERVICES] = services
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/livez", livez)
    app.router.add_get("/metrics", metrics)
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


async def livez(request: web.Request) -> web.Response:
    """The process and its event loop answer (container health checks); readiness is /healthz."""
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition (calltracking/metrics.py); the web nodes add database-wide figures."""
    services = request.app[SERVICES]
    db = services.db if HUB in request.app else None  # only web nodes read database figures
    body = await services.metrics.render(db, services.clock())
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _lease_updates(app: web.Application) -> AsyncIterator[None]:
    """Changes decided on any node (bus `lease.*`, `pool.*`) reach this node's tabs."""
    services, hub = app[SERVICES], app[HUB]
    subscription = await services.bus.subscribe(
        None, ["lease.#", "pool.#"], hub.on_event, durable=False, wants=hub.wants
    )
    yield
    await subscription.close()


async def _sweeper(app: web.Application) -> AsyncIterator[None]:
    """Apply due times (show delay, idle revocation, vanished tabs) and keep our tabs alive.
    It sleeps until the engines' next due time, the next tab touch or `SWEEP_IDLE_S`, whichever
    comes first, and is woken early by any committed visitor batch (a due time may have moved);
    rounds start at least `sweep_interval_s` apart. On shutdown the loop finishes its round
    rather than being cancelled inside a transaction."""
    services, hub = app[SERVICES], app[HUB]
    stopping = asyncio.Event()
    woken = services.due_wake.subscribe()

    async def sweep_forever() -> None:
        last_touch = 0.0
        loop = asyncio.get_running_loop()
        sweeps = QuietLog(log, "lease sweep failed; trying again")
        while not stopping.is_set():
            started = loop.time()
            woken.clear()
            try:
                if loop.time() - last_touch >= TOUCH_INTERVAL_S:
                    await services.visitors.touch_tabs(hub.tab_ids(), services.clock())
                    last_touch = loop.time()
                changed = await services.visitors.sweep(services.clock())
                await hub.refresh(changed)
            except Exception as exc:
                sweeps.failed(exc, loop.time())  # one line a minute while the database is away
            else:
                sweeps.recovered()
            woken.clear()  # our own sweep's batches; later ones wake us again
            await sleep_until(services.sweep_interval_s - (loop.time() - started), stopping)
            await sleep_until(_idle_for(services, last_touch - loop.time()), stopping, woken)

    task = asyncio.create_task(sweep_forever(), name="lease-sweeper")
    services.health.parts["sweeper"] = lambda: not task.done()
    yield
    stopping.set()
    try:
        await asyncio.wait_for(task, 5.0)
    except TimeoutError:
        log.warning("lease sweeper did not stop in time; cancelled")


def _idle_for(services: Services, since_touch_s: float) -> float:
    """Seconds until the sweeper has something to do: a due time, a tab touch, or the
    periodic look for sites and vanished tabs (`SWEEP_IDLE_S`)."""
    wait_s = min(SWEEP_IDLE_S, TOUCH_INTERVAL_S + since_touch_s)
    due = services.visitors.next_due()
    if due is not None:
        wait_s = min(wait_s, (due - services.clock()).total_seconds())
    return wait_s


async def _close_sockets(app: web.Application) -> None:
    await app[HUB].close_all()

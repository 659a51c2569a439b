"""Dashboard routes: one shell per page, the dashboard's static files, and `/` -> `/dashboard/`."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp_jinja2
import jinja2
from aiohttp import web

from web.keys import SERVICES

JINJA = web.AppKey("dashboard_jinja", jinja2.Environment)
STATIC = Path(__file__).resolve().parent.parent / "static"
STATIC_FILES = {
    "dashboard.css": "text/css",
    "dashboard.js": "application/javascript",
    "waveform.js": "application/javascript",
    # the dashboard product's pages, one file each, and what they share
    "product.css": "text/css",
    "product.js": "application/javascript",
    "calls.js": "application/javascript",
    "overview.js": "application/javascript",
    "sitesetup.js": "application/javascript",
    "reports.js": "application/javascript",
    "qualification.js": "application/javascript",
    "advice.js": "application/javascript",
}
# (path, template, page name, title); `{site_id}` / `{call_id}` become data attributes.
PAGES = (
    ("/dashboard/login", "login.html", "login", "Sign in"),
    ("/dashboard/", "sites.html", "sites", "Sites"),
    ("/dashboard/sites/{site_id}", "site.html", "site", "Site"),
    ("/dashboard/sites/{site_id}/reports", "reports.html", "reports", "Reports"),
    ("/dashboard/overview", "overview.html", "overview", "Overview"),
    ("/dashboard/sites/new", "sitesetup.html", "site-new", "New site"),
    ("/dashboard/sites/{site_id}/overview", "overview.html", "site-overview", "Overview"),
    ("/dashboard/calls", "calls.html", "calls", "Calls"),
    ("/dashboard/calls/{call_id}", "call.html", "call", "Call"),
)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", _to_dashboard)
    app.router.add_get("/dashboard", _to_dashboard)
    app.router.add_get("/dashboard/static/{name}", _static)
    for path, template, page, title in PAGES:
        app.router.add_get(path, _shell(template, page, title), name=f"dashboard-{page}")


def _shell(template: str, page: str, title: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        context = {
            "page": page,
            "title": title,
            "site_id": request.match_info.get("site_id", ""),
            "call_id": request.match_info.get("call_id", ""),
            "asset": _asset_url,
        }
        response = aiohttp_jinja2.render_template(template, request, context, app_key=JINJA)
        _secure(response, request)
        return response

    return handler


async def _to_dashboard(request: web.Request) -> web.Response:
    raise web.HTTPFound("/dashboard/")


async def _static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound()
    response = web.FileResponse(STATIC / name)
    response.headers["Content-Type"] = f"{STATIC_FILES[name]}; charset=utf-8"
    response.headers["Cache-Control"] = "no-cache"  # revalidated by ETag; cheap and never stale
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _asset_url(name: str) -> str:
    try:
        version = int((STATIC / name).stat().st_mtime)
    except OSError:
        version = 0
    return f"/dashboard/static/{name}?v={version}"


def _secure(response: web.Response, request: web.Request) -> None:
    """Scripts only from here; media and API calls also to the configured public origin."""
    extra = _origin(request.app[SERVICES].config.public_url)
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        f"media-src 'self' blob: {extra}; connect-src 'self' {extra}; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""

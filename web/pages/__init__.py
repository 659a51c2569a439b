"""The operator dashboard: server-rendered shells under `/dashboard/`.

Rules:
- Pages carry no data and need no session on the server: each shell names its page and ids in
  `data-*` attributes, and `static/dashboard.js` fills it from the JSON API (`/api/v1/...`) with the
  operator's session cookie (web/api/session.py). So every route here is public and cheap; the
  API decides what a session may see.
- Only the dashboard's own files are served from `/dashboard/static/`, by name.
- Pages send a strict Content-Security-Policy: scripts and styles come from this server only, so
  a value shown on a page (a caller id, a UTM tag) can never run as code.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from web.pages.views import JINJA, add_routes

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def setup_pages(app: web.Application) -> None:
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(default=True),
        app_key=JINJA,
    )
    add_routes(app)

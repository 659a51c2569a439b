"""A site owner's web server for the end-to-end browser tests: it serves host pages on 127.0.0.1
that carry the snippet tag pointing at the real tracker, as a site owner would paste it.

Rules: the page origin is `http://127.0.0.1:PORT`, so the tracker's site must list "127.0.0.1"
among its domains; each page is registered under its own path before the browser opens it.
"""

from __future__ import annotations

import html

from aiohttp import web

OWN_E164 = "+74950009001"  # the site's own number, printed in the HTML
OWN_DISPLAY = "+7 (495) 000-90-01"
PHONE = (
    f'<p>Call us: <a id="phone" class="calltracking-phone" href="tel:{OWN_E164}">{OWN_DISPLAY}</a>'
    "</p>"
)
FAR_PHONE = (
    '<div id="spacer" style="height: 3000px">top of a long page</div>'
    f'<p><a id="far" class="calltracking-phone" href="tel:{OWN_E164}">{OWN_DISPLAY}</a></p>'
)


def host_page(body: str, src: str, site_key: str, **attrs: str) -> str:
    """The HTML of a page with `body` and the snippet tag (`attrs`: data-* without the prefix)."""
    extra = "".join(f' data-{name}="{html.escape(value)}"' for name, value in attrs.items())
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title>'
        "<style>body{font:20px/1.5 sans-serif;margin:2rem}</style></head>"
        f"<body><h1>Shop</h1>{body}"
        f'<script src="{html.escape(src)}" data-site="{html.escape(site_key)}"{extra} async>'
        "</script></body></html>"
    )


class HostPages:
    """Serves registered pages by path; `start` binds a free port."""

    def __init__(self) -> None:
        self._pages: dict[str, str] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, path: str, markup: str) -> str:
        """Register `markup` at `path` ("/shop"); returns the page's URL."""
        self._pages[path] = markup
        return f"{self.base}{path}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{path:.*}", self._serve)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _serve(self, request: web.Request) -> web.Response:
        markup = self._pages.get(request.path)
        if markup is None:
            raise web.HTTPNotFound()
        return web.Response(text=markup, content_type="text/html")

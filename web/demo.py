"""The demo landing page (`calltracking demo` only): a shop page carrying the snippet, and a
button that makes the simulated PBX call the number the visitor is shown."""

from __future__ import annotations

import html
import logging

from aiohttp import web

from calltracking.core.numbers import is_e164
from calltracking.services import DemoHooks

log = logging.getLogger(__name__)
DEMO_HOOKS = web.AppKey("demo_hooks", DemoHooks)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Demo shop: call tracking</title>
<style>
 body{{font:16px/1.5 system-ui,sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem;
   color:#222}}
 .phone{{font-size:2rem;font-weight:700;color:#0a58ca;text-decoration:none}}
 button{{font-size:1.1rem;padding:.6rem 1.2rem;border-radius:.4rem;border:0;background:#198754;
   color:#fff;cursor:pointer}} button:disabled{{background:#999}}
 .note{{color:#555;font-size:.9rem}} #result{{margin-top:1rem}}
</style></head>
<body>
<h1>Demo shop</h1>
<p>Call us:</p>
<p><a class="phone calltracking-phone" id="phone" href="tel:{initial}">{initial_display}</a></p>
<p><button id="call" type="button">Call this number (simulated PBX)</button></p>
<div id="result" class="note"></div>
<p class="note">The number above starts as the site's own number; after the display delay the
tracker replaces it with a number leased to you alone. Pressing the button makes the simulated
Asterisk place an inbound call to the number you see, from a random caller. Then open the
<a href="/dashboard/">dashboard</a> and find the call with its source and recording.</p>
<script src="/snippet.js" data-site="{site_key}" data-activity-ms="5000" async></script>
<script>
document.getElementById('call').addEventListener('click', async function () {{
  var button = this, result = document.getElementById('result');
  var href = document.getElementById('phone').getAttribute('href') || '';
  var number = href.replace(/^tel:/, '');
  button.disabled = true; result.textContent = 'Calling ' + number + '…';
  try {{
    var response = await fetch('/demo/call', {{method: 'POST',
      headers: {{'Content-Type': 'application/json'}}, body: JSON.stringify({{number: number}})}});
    var body = await response.json();
    result.textContent = response.ok
      ? 'Call placed (Asterisk Linkedid ' + body.linkedid + '). It appears in the dashboard.'
      : 'Could not call: ' + body.error.message;
  }} catch (e) {{ result.textContent = 'Could not call: ' + e; }}
  setTimeout(function () {{ button.disabled = false; }}, 3000);
}});
</script>
</body></html>
"""


def setup_demo(app: web.Application, hooks: DemoHooks) -> None:
    app[DEMO_HOOKS] = hooks
    app.router.add_get("/demo/", landing)
    app.router.add_get("/demo", to_landing)
    app.router.add_post("/demo/call", place_call)


async def to_landing(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/demo/")


async def landing(request: web.Request) -> web.Response:
    from web.keys import SERVICES

    hooks = request.app[DEMO_HOOKS]
    services = request.app[SERVICES]
    from calltracking.core.numbers import format_display
    from calltracking.store.sites import get_site_by_key

    async with services.db.read() as conn:
        site = await get_site_by_key(conn, hooks.site_key)
    if site is None:
        raise web.HTTPNotFound(text="the demo site is gone; restart `calltracking demo`")
    initial = site.defaults[next(iter(site.defaults))]
    body = PAGE.format(
        initial=html.escape(initial),
        initial_display=html.escape(
            format_display(initial, site.settings.display_format, services.config.country_code)
        ),
        site_key=html.escape(site.key),
    )
    return web.Response(text=body, content_type="text/html")


async def place_call(request: web.Request) -> web.Response:
    hooks = request.app[DEMO_HOOKS]
    try:
        body = await request.json()
    except ValueError:
        body = None
    number = body.get("number") if isinstance(body, dict) else None
    if not is_e164(number):
        return web.json_response(
            {
                "error": {
                    "code": "invalid",
                    "message": "number: an E.164 number is required",
                    "field": "number",
                }
            },
            status=422,
        )
    linkedid = await hooks.place_call(str(number))
    return web.json_response({"linkedid": linkedid}, status=202)

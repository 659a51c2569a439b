"""Typed keys for what the app shares between handlers."""

from aiohttp import web

from calltracking.services import Services
from web.hub import Hub
from web.site_cache import SiteCache

SERVICES = web.AppKey("services", Services)
HUB = web.AppKey("hub", Hub)
SITES = web.AppKey("sites", SiteCache)

"""Typed keys for what the app shares between handlers."""

from aiohttp import web

from calltracking.services import Services
from calltracking.store.site_cache import SiteCache
from web.hub import Hub

SERVICES = web.AppKey("services", Services)
HUB = web.AppKey("hub", Hub)
SITES = web.AppKey("sites", SiteCache)

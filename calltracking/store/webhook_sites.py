"""Which events some site's webhook may want: what the webhook dispatcher asks of every event
it is given, and the RabbitMQ bus of every relaying process asks of every event it publishes
(bus/rabbit.py, "Routed queues").

Sites are remembered for `SiteCache.TTL_S` (store/site_cache.py): a webhook added applies to
events from that long later, and a delivery re-reads the site before it is made. `wants` never
waits: for a site not remembered it answers True and reads the site in the background, so the
site's next events are told apart. Every `lease.*` event of every site passes here and most
sites have no webhook, so the answer for them is what keeps those events out of the durable
webhook queue.
"""

from __future__ import annotations

import asyncio
import logging

from calltracking.core.events import Event
from calltracking.exporters.webhooks import matches
from calltracking.store.db import Database
from calltracking.store.site_cache import SiteCache
from calltracking.store.sites import Site, get_site

log = logging.getLogger(__name__)
# Sites read in the background at once, at most; beyond that an event is simply wanted.
MAX_LEARNING = 64


class WebhookSites:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache = SiteCache(self._read)
        self._learning: dict[str, asyncio.Task[None]] = {}
        db.on_close(self.close)  # no read may start on an engine being disposed

    async def _read(self, site_id: str) -> Site | None:
        async with self._db.read() as conn:
            return await get_site(conn, site_id)

    async def site(self, site_id: str) -> Site | None:
        """The site as remembered, or read now (concurrent reads of one site share one)."""
        return await self._cache.by_key(site_id)

    def wants(self, event: Event) -> bool:
        """False for an event no webhook could take: one without a site id, or of a site
        remembered with no webhook subscribed to its key. True when it cannot tell yet."""
        site_id = event.data.get("site_id")
        if not isinstance(site_id, str):
            return False
        site = self._cache.cached(site_id)
        if site is None:
            self._learn(site_id)
            return True
        return any(matches(hook, event.key) for hook in site.settings.analytics.webhooks)

    def _learn(self, site_id: str) -> None:
        if site_id in self._learning or len(self._learning) >= MAX_LEARNING:
            return
        self._learning[site_id] = asyncio.get_running_loop().create_task(
            self._load(site_id), name=f"webhook-site:{site_id}"
        )

    async def _load(self, site_id: str) -> None:
        try:
            await self._cache.by_key(site_id)
        except Exception:
            # The events meanwhile are wanted; the next one tries again.
            log.debug("could not read site %s for its webhooks", site_id, exc_info=True)
        finally:
            self._learning.pop(site_id, None)

    async def close(self) -> None:
        learning = list(self._learning.values())
        for task in learning:
            task.cancel()
        await self._cache.close()  # the reads themselves, shielded from their waiters
        if learning:
            await asyncio.wait(learning)

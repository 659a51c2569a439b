"""Sites remembered for a moment, by whatever the loader takes (a site key, a site id).

Hot paths would otherwise each pay a database read for the same row:
- visitor hellos (by key) use the site only to find it, check the `Origin` and tell the snippet
  `lease_on`; a change to the domains reaches new hellos within `TTL_S`. What a visitor is
  shown is decided on the site as the database has it (the deciding batch reloads it whenever
  the site's state version moved), never on this copy;
- the webhook worker (by id) checks every `lease.*` and `call.*` event against the site's
  webhooks; a webhook added applies to events from `TTL_S` later, and a delivery re-reads the
  site before it is made, so a removed webhook is never called.
Unknown sites are not remembered, so a flood of made-up keys cannot fill memory. Concurrent
lookups of one key share one read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from calltracking.store.sites import Site

TTL_S = 2.0
MAX_SITES = 10_000


class SiteCache:
    def __init__(
        self,
        load: Callable[[str], Awaitable[Site | None]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._clock = clock
        self._sites: dict[str, tuple[float, Site]] = {}
        self._loading: dict[str, asyncio.Future[Site | None]] = {}

    def cached(self, key: str) -> Site | None:
        """The site if it is remembered and fresh; None when it would have to be read."""
        cached = self._sites.get(key)
        if cached is not None and self._clock() - cached[0] < TTL_S:
            return cached[1]
        return None

    async def by_key(self, key: str) -> Site | None:
        site = self.cached(key)
        if site is not None:
            return site
        now = self._clock()
        # One read however many hellos ask at once (a reconnect storm asks thousands).
        loading = self._loading.get(key)
        if loading is None:
            loading = self._loading[key] = asyncio.ensure_future(self._fetch(key, now))
            loading.add_done_callback(lambda _: self._loading.pop(key, None))
        return await asyncio.shield(loading)

    async def _fetch(self, key: str, now: float) -> Site | None:
        site = await self._load(key)
        if site is None:
            self._sites.pop(key, None)
            return None
        if len(self._sites) >= MAX_SITES:
            self._sites.clear()
        self._sites[key] = (now, site)
        return site

    async def close(self) -> None:
        """Stop the reads in flight (their waiters see them cancelled)."""
        loading = list(self._loading.values())
        for future in loading:
            future.cancel()
        if loading:
            await asyncio.wait(loading)

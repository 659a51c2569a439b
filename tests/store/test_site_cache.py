"""Hellos find their site in a short-lived cache: one database read per site per moment, unknown
keys never remembered."""

from __future__ import annotations

import asyncio
from typing import cast

from calltracking.store.site_cache import TTL_S, SiteCache
from calltracking.store.sites import Site

SITE = cast(Site, object())


async def test_a_known_site_is_read_once_per_moment_and_unknown_keys_every_time() -> None:
    reads: list[str] = []
    now = [100.0]

    async def load(key: str) -> Site | None:
        reads.append(key)
        return SITE if key == "known" else None

    cache = SiteCache(load, clock=lambda: now[0])
    assert await cache.by_key("known") is SITE
    assert await cache.by_key("known") is SITE
    assert reads == ["known"]
    now[0] += TTL_S
    assert await cache.by_key("known") is SITE
    assert reads == ["known", "known"]
    for _ in range(3):
        assert await cache.by_key("made-up") is None
    assert reads.count("made-up") == 3


async def test_a_thousand_hellos_at_once_share_one_read() -> None:
    reads: list[str] = []
    release = asyncio.Event()

    async def load(key: str) -> Site | None:
        reads.append(key)
        await release.wait()
        return SITE

    cache = SiteCache(load)
    lookups = [asyncio.ensure_future(cache.by_key("known")) for _ in range(1000)]
    await asyncio.sleep(0)
    release.set()
    assert set(await asyncio.gather(*lookups)) == {SITE}
    assert reads == ["known"]

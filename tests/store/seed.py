"""Seed data for store tests: an account, a site with defaults, and reserve numbers."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from calltracking.core.settings import SiteSettings
from calltracking.store.db import Database
from calltracking.store.sites import Site, add_to_reserve, create_account, create_site

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
DESKTOP_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0 Safari/537.36"
)


def numbers(count: int, start: int = 1) -> list[str]:
    return [f"+7495111{n:04d}" for n in range(start, start + count)]


async def seed_site(
    db: Database,
    *,
    reserve: int = 5,
    max_numbers: int = 50,
    name: str = "shop",
    domains: tuple[str, ...] = ("shop.example",),
    defaults_base: int = 9000,
    **settings: object,
) -> Site:
    # Tests play many visitors from one loopback address; the per-address cap has its own tests.
    settings.setdefault("max_leases_per_address", 10_000)
    async with db.write() as conn:
        account = await create_account(conn, name, T0, max_numbers=max_numbers)
        await add_to_reserve(conn, numbers(reserve), T0)
        base = dataclasses.replace(SiteSettings(), **settings)  # type: ignore[arg-type]  # test kwargs of mixed types
        return await create_site(
            conn,
            account_id=account.id,
            name=name,
            domains=domains,
            defaults={
                "initial": f"+7495000{defaults_base + 1:04d}",
                "expired": f"+7495000{defaults_base + 2:04d}",
                "untracked": f"+7495000{defaults_base + 3:04d}",
            },
            settings=base,
            now=T0,
        )

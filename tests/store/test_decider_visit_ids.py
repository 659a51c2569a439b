"""Analytics ids a returning tab brings are stored on the visit it continues, and a tab that
brings none keeps the stored ones (the GA cookie may appear only after the first page)."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from calltracking.store import schema as t
from calltracking.store.db import Database
from calltracking.store.deciders import DeciderService
from calltracking.store.visitors import Hello
from tests.store.seed import DESKTOP_UA, T0, seed_site


async def test_a_continued_visit_learns_analytics_ids_and_keeps_them(any_db: Database) -> None:
    site = await seed_site(any_db, reserve=2)
    service = DeciderService(any_db, "node", "7")
    page = Hello(url="https://shop.example/", referrer="", user_agent=DESKTOP_UA)
    first = await service.hello(site, page, T0)
    with_ids = Hello(
        url="https://shop.example/",
        referrer="",
        user_agent=DESKTOP_UA,
        visitor_id=first.visitor_id,
        ga="GA1.1.1234567890.1700000000",
        ym="1700000000123456789",
    )
    second = await service.hello(site, with_ids, T0 + timedelta(seconds=20))
    bare = Hello(url="https://shop.example/", referrer="", user_agent=DESKTOP_UA,
                 visitor_id=first.visitor_id)  # fmt: skip
    third = await service.hello(site, bare, T0 + timedelta(seconds=40))
    assert first.visit_id == second.visit_id == third.visit_id
    async with any_db.read() as conn:
        visit = (await conn.execute(sa.select(t.visits))).one()
    assert (visit.ga_client_id, visit.ym_client_id) == (
        "1234567890.1700000000",
        "1700000000123456789",
    )

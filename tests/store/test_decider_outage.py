"""A tab that closes while the database is out still ends its lease once the database is back,
at the moment it really closed, so the hold starts then and the number is not kept for
minutes by a tab that is gone."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from calltracking.core.kinds import DisplayKind
from calltracking.store import schema as t
from calltracking.store.db import Database
from calltracking.store.deciders import DeciderService
from calltracking.store.visitors import Hello
from tests.store.seed import DESKTOP_UA, T0, seed_site
from tests.support.tcpproxy import TcpProxy

pytestmark = pytest.mark.postgres


async def test_a_tab_closed_during_an_outage_ends_its_lease_when_the_database_is_back(
    pg_db: Database,
) -> None:
    site = await seed_site(pg_db, reserve=2)
    url = sa.make_url(pg_db.url)
    proxy = await TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    db = Database(str(url.set(port=proxy.port)))
    try:
        service = DeciderService(db, "node", "7")
        hello = Hello(url="https://shop.example/", referrer="", user_agent=DESKTOP_UA)
        welcome = await service.hello(site, hello, T0)
        assert welcome.shown.kind is DisplayKind.DYNAMIC
        closed_at = T0 + timedelta(seconds=30)

        proxy.cut()
        with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises for a cut link
            await service.tab_closed(site, welcome.visitor_id, welcome.tab_id, closed_at)
        proxy.restore()

        later = T0 + timedelta(seconds=90)
        for _ in range(20):  # the pool's next connection may still meet the cut one
            try:
                await service.sweep(later)
                break
            except Exception:
                continue
        async with pg_db.read() as conn:
            lease = (await conn.execute(sa.select(t.leases))).one()
            tabs = await conn.scalar(sa.select(sa.func.count()).select_from(t.tabs))
        assert (lease.ended_at, lease.end_reason) == (closed_at, "closed")
        assert tabs == 0
    finally:
        await db.close()
        await proxy.stop()

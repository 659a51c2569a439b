"""A long-running node keeps in memory the visitors that are live, not every visitor and
address it ever saw: the sweeper forgets the rest, and a returning visitor is restored from the
store as it was."""

from __future__ import annotations

from datetime import timedelta

from calltracking.core.kinds import DisplayKind
from calltracking.store.db import Database
from calltracking.store.deciders import DeciderService
from calltracking.store.visitors import Hello
from tests.store.seed import DESKTOP_UA, T0, seed_site


def hello_from(address: str, visitor_id: str | None = None) -> Hello:
    return Hello(
        url="https://shop.example/",
        referrer="",
        visitor_id=visitor_id,
        user_agent=DESKTOP_UA,
        address=address,
    )


async def test_the_sweeper_forgets_visitors_and_addresses_that_left(sqlite_db: Database) -> None:
    site = await seed_site(sqlite_db, reserve=3, hold_s=60)
    service = DeciderService(sqlite_db, node_id="n1", country_code="7")
    addresses = [f"198.51.100.{n}" for n in range(1, 4)]
    welcomes = [await service.hello(site, hello_from(a), T0) for a in addresses]
    live = await service.hello(site, hello_from("192.0.2.9"), T0)
    for welcome in welcomes:
        await service.tab_closed(site, welcome.visitor_id, welcome.tab_id, T0)
    engine = service._slots[site.id].engine
    assert engine is not None
    assert len(engine.visitors) == 4 and len(engine.hello_rate) == 4

    later = T0 + timedelta(hours=2)
    await service.sweep(later)
    # Only the visitor with an open tab stays; every hello bucket has refilled.
    assert set(engine.visitors) == {live.visitor_id}
    assert len(engine.hello_rate) == 0

    back = await service.hello(site, hello_from(addresses[0], welcomes[0].visitor_id), later)
    assert back.visitor_id == welcomes[0].visitor_id
    assert back.shown.kind is DisplayKind.DYNAMIC
    await service.close()

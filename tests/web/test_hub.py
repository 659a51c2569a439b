"""The hub recomputes a visitor's number on a bus event only when its tabs do not already show
the change: this node's own changes come back through the bus and must not cost a second
database transaction each."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from calltracking.core.events import Event
from calltracking.core.kinds import DisplayKind
from calltracking.store.db import Database
from calltracking.store.deciders import DeciderService
from calltracking.store.visitors import Shown
from web.hub import Hub, Tab

NOW = datetime(2026, 11, 25, tzinfo=UTC)
NUMBER = "+74951110001"


class CountingVisitors(DeciderService):
    """The real service, counting how often the hub asks it to recompute."""

    def __init__(self, db: Database) -> None:
        super().__init__(db, "node", "7")
        self.asked: list[str] = []

    async def current(self, visitor_id: str, now: datetime) -> Shown | None:
        self.asked.append(visitor_id)
        return await super().current(visitor_id, now)


def event(key: str, **data: Any) -> Event:
    return Event(key=key, id=key + str(data), occurred_at=NOW, data={"visitor": "v1", **data})


async def test_events_the_tabs_already_show_cost_no_recompute(sqlite_db: Database) -> None:
    visitors = CountingVisitors(sqlite_db)
    hub = Hub(visitors, lambda: NOW)
    tab = Tab(web.WebSocketResponse(), "site", "v1", "tab", "127.0.0.1")
    tab.shown = Shown(DisplayKind.DYNAMIC, NUMBER, "+7 (495) 111-00-01")
    hub.add(tab)

    await hub.on_event(event("lease.assigned", number=NUMBER))
    await hub.on_event(event("lease.released", number="+74951110002"))
    await hub.on_event(event("lease.assigned", number=NUMBER, visitor="elsewhere"))
    assert visitors.asked == []

    await hub.on_event(event("lease.released", number=NUMBER))  # the tab still shows it
    await hub.on_event(event("lease.assigned", number="+74951110002"))
    await hub.on_event(event("pool.exhausted"))
    assert visitors.asked == ["v1", "v1", "v1"]

"""The hub recomputes a visitor's number on a bus event only when its tabs do not already show
the change: this node's own changes come back through the bus and must not cost a second
database transaction each."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from aiohttp import web

from calltracking.core.events import Event
from calltracking.core.kinds import DisplayKind
from calltracking.store.db import Database
from calltracking.store.deciders import DeciderService
from calltracking.store.visitors import Shown
from web import hub as hub_module
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


async def test_tabs_coming_and_going_are_summed_up_once_a_minute(
    sqlite_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="web.hub")
    clock = [1000.0]
    hub = Hub(DeciderService(sqlite_db, "node", "7"), lambda: NOW, lambda: clock[0])
    tabs = [
        Tab(web.WebSocketResponse(), "site", f"v{i % 3}", f"t{i}", "10.0.0.1") for i in range(5)
    ]
    for tab in tabs:
        hub.add(tab)
    hub.remove(tabs[0])
    assert not caplog.records  # within the minute: no line per tab
    clock[0] += hub_module.SUMMARY_EVERY_S
    hub.remove(tabs[1])
    (line,) = [r.getMessage() for r in caplog.records]
    assert line == ("visitor tabs: 3 open, 3 visitors; 5 opened and 2 closed in the last 60 s")
    clock[0] += 1
    hub.remove(tabs[2])
    assert len(caplog.records) == 1  # the next line waits for the next minute


class SlowSocket:
    """Records frames; the first send waits until `release` is set."""

    closed = False

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.release = asyncio.Event()

    async def send_json(self, frame: dict[str, Any]) -> None:
        if not self.frames:
            await self.release.wait()
        self.frames.append(frame)


async def test_a_push_of_what_a_tab_shows_still_follows_a_send_under_way(
    sqlite_db: Database,
) -> None:
    hub = Hub(DeciderService(sqlite_db, "node", "7"), lambda: NOW)
    socket = SlowSocket()
    tab = Tab(cast(web.WebSocketResponse, socket), "site", "v1", "tab", "127.0.0.1")
    shown_a = Shown(DisplayKind.DYNAMIC, NUMBER, "+7 (495) 111-00-01")
    shown_b = Shown(DisplayKind.EXPIRED, "+74951110009", "+7 (495) 111-00-09")
    tab.shown = shown_a
    hub.add(tab)
    first = asyncio.create_task(hub.push("v1", shown_b))
    await asyncio.sleep(0)  # B is being sent
    second = asyncio.create_task(hub.push("v1", shown_a))  # A again, decided after B
    await asyncio.sleep(0)
    socket.release.set()
    await asyncio.gather(first, second)
    assert [f["kind"] for f in socket.frames] == ["expired", "dynamic"]
    assert tab.shown == shown_a
    await hub.push("v1", shown_a)  # shown, nothing under way: no frame
    assert len(socket.frames) == 2

"""The simulator runs the production lifecycle: the same small file played against a live
server (real websockets) and through the simulator changes the same way when `hold_s` changes.

The file: visitor a opens a tab, gets a number, closes the tab, and comes back. The pool holds
two never-used numbers from the start. With a hold, a gets its number back at once; with
`hold_s` 0 the never-used second number comes first."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa

from calltracking.core.settings import SiteSettings
from calltracking.serve import Running
from calltracking.simulate.replay import Replay, Scenario
from calltracking.simulate.traffic import HEADER, parse_traffic
from calltracking.store import schema as t
from tests.web.harness import hello, make_site, open_tab, session, tracker, web_config

FILE = ",".join(HEADER) + "\na,0,1,1,https://shop.example/,,\na,2,3,3,https://shop.example/,,\n"


def simulated(hold_s: int) -> bool:
    """Whether the returning visit was shown the first visit's number, in the simulator."""
    run = Replay(parse_traffic(FILE), Scenario(SiteSettings(hold_s=hold_s), pool=2))
    run.run()
    return run.last_dynamic[0] == run.last_dynamic[1]


async def live(tmp_path: Path, hold_s: int) -> bool:
    """The same file against a live server; the pool filled through the API first."""
    async with tracker(web_config(tmp_path)) as state, session() as http:
        site = await make_site(state, reserve=2, pool_max=2, hold_s=hold_s)
        url = f"http://127.0.0.1:{state.http_port}/api/v1/sites/{site.id}/numbers"
        headers = {"Authorization": "Bearer admin-secret"}
        async with http.post(url, json={"count": 2}, headers=headers) as response:
            assert response.status == 200, await response.text()
        first = await open_tab(http, state)
        welcome = await hello(first, site)
        number = (await first.until_kind("dynamic"))["e164"]
        await first.ws.close()
        await _lease_ended(state)
        back = await open_tab(http, state)
        await hello(back, site, visitor=welcome["visitor"])
        again = (await back.until_kind("dynamic"))["e164"]
        await back.ws.close()
        return bool(number == again)


async def _lease_ended(state: Running) -> None:
    """The server handles the close on its own time: wait until the lease row says so."""
    async with asyncio.timeout(10):
        while True:
            async with state.services.db.read() as conn:
                ended = await conn.scalar(
                    sa.select(sa.func.count()).where(t.leases.c.ended_at.is_not(None))
                )
            if ended:
                return
            await asyncio.sleep(0.05)


@pytest.mark.parametrize(("hold_s", "same_number"), [(600, True), (0, False)])
async def test_hold_changes_the_live_server_and_the_simulator_alike(
    tmp_path: Path, hold_s: int, same_number: bool
) -> None:
    assert simulated(hold_s) is same_number
    assert await live(tmp_path, hold_s) is same_number

"""The abuse rules through the public interfaces: real websockets against the running app, client
addresses played with `X-Forwarded-For` from a trusted proxy (the loopback peer), counts read
from the database, alerts read from the outbox and the in-process bus, the cap changed by the
operator API. Each test fails when its rule is taken out of the engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from multidict import CIMultiDict

from calltracking.core.engine.abuse import HELLO_BURST
from calltracking.core.events import Event
from calltracking.serve import Running, running
from calltracking.services import Services, utc_now
from calltracking.store import schema as t
from calltracking.store.sites import Site
from tests.store.seed import DESKTOP_UA, numbers
from tests.web.harness import (
    ORIGIN,
    Tab,
    fast,
    hello,
    make_site,
    open_tab,
    session,
    web_config,
)

PROXY = ("127.0.0.1",)  # the tests' peer, trusted as a reverse proxy
BOT, PERSON, OTHER = "203.0.113.7", "198.51.100.1", "198.51.100.2"


@asynccontextmanager
async def behind_proxy(
    tmp_path: Path, clock: Callable[[], datetime] | None = None, **overrides: Any
) -> AsyncIterator[Running]:
    def tweak(services: Services) -> None:
        fast(services)
        if clock is not None:
            services.clock = clock

    config = web_config(tmp_path, **{"trusted_proxies": PROXY, **overrides})
    async with running(config, ["web"], tweak=tweak) as state:
        yield state


async def visitor_from(
    http: aiohttp.ClientSession, state: Running, site: Site, address: str, **extra: Any
) -> tuple[Tab, dict[str, Any], dict[str, Any]]:
    """A new visitor's tab from `address`: the tab, its welcome and the first number it shows."""
    tab = await open_tab(http, state, headers={"X-Forwarded-For": f"10.1.1.1, {address}"})
    welcome = await hello(tab, site, **extra)
    return tab, welcome, await tab.number()


def refusal_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "refused a number" in r.getMessage()]


async def count(state: Running, table: sa.Table) -> int:
    async with state.services.db.read() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


async def lease_addresses(state: Running) -> list[str]:
    async with state.services.db.read() as conn:
        rows = await conn.execute(
            sa.select(t.leases.c.address).where(t.leases.c.ended_at.is_(None))
        )
        return sorted(rows.scalars())


async def test_a_bot_address_cannot_hold_the_pool_and_other_visitors_get_numbers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with behind_proxy(tmp_path) as state, session() as http:
        # pool_max 3: the default cap is a quarter of it, at least 1 -> one lease per address.
        site = await make_site(state, reserve=3, pool_max=3, max_leases_per_address=None)
        bots = [await visitor_from(http, state, site, BOT) for _ in range(3)]
        assert [b[2]["kind"] for b in bots] == ["dynamic", "untracked", "untracked"]
        person = await visitor_from(http, state, site, PERSON)
        other = await visitor_from(http, state, site, OTHER)
        assert person[2]["kind"] == other[2]["kind"] == "dynamic"
        assert len({bots[0][2]["e164"], person[2]["e164"], other[2]["e164"]}) == 3
        assert await lease_addresses(state) == sorted([BOT, PERSON, OTHER])
        # One line for the two refusals (a minute apart at the most), naming the rule and address.
        lines = refusal_lines(caplog)
        assert len(lines) == 1 and f"address_cap refused a number to address {BOT}" in lines[0]


class FrozenClock:
    """One instant for the whole flood: the hello rate is then exact, however slow the machine."""

    def __init__(self) -> None:
        self.at = utc_now()

    def __call__(self) -> datetime:
        return self.at


async def test_a_hello_flood_from_one_address_is_refused_without_rows_but_a_crowd_passes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with behind_proxy(tmp_path, clock=FrozenClock()) as state, session() as http:
        site = await make_site(state, reserve=5, max_leases_per_address=None)
        gate = asyncio.Semaphore(10)

        async def one(address: str) -> bool:
            async with gate:
                tab, welcome, first = await visitor_from(http, state, site, address)
                await tab.ws.close()
                if not welcome["session"]:
                    assert first["kind"] == "untracked"
                return bool(welcome["session"])

        flood = await asyncio.gather(*(one(BOT) for _ in range(300)))
        assert sum(flood) == HELLO_BURST  # the burst passes, the rest are refused
        assert await count(state, t.visitors) == HELLO_BURST
        assert await count(state, t.visits) == HELLO_BURST
        leases_after_flood = await count(state, t.leases)
        assert leases_after_flood <= HELLO_BURST
        assert await count(state, t.tabs) == 0
        # One line for the flood, not one per refusal.
        (line,) = [line for line in refusal_lines(caplog) if "hello_rate" in line]
        assert f"hello_rate refused a number to address {BOT}" in line

        # A TV ad: 300 households at the same instant, each its own address.
        crowd = await asyncio.gather(*(one(_ip(n)) for n in range(300)))
        assert all(crowd)
        assert await count(state, t.visitors) == HELLO_BURST + 300


def _ip(n: int) -> str:
    return f"100.64.{n // 250}.{n % 250 + 1}"


async def test_activity_from_one_address_does_not_defeat_fair_share_preemption(
    tmp_path: Path,
) -> None:
    async with behind_proxy(tmp_path) as state, session() as http:
        # The cap lets the bot take the whole pool; idle pre-emption after 3 s of silence.
        site = await make_site(
            state, reserve=2, pool_max=2, max_leases_per_address=2, preempt_idle_s=3
        )
        bots = [await visitor_from(http, state, site, BOT) for _ in range(2)]
        assert [b[2]["kind"] for b in bots] == ["dynamic", "dynamic"]
        stop, busy_for_4s = asyncio.Event(), asyncio.Event()

        async def keep_busy() -> None:
            rounds = 0
            while not stop.is_set():
                for tab, _, _ in bots:
                    await tab.send({"type": "activity"})
                rounds += 1
                if rounds == 3:  # the leases are older than preempt_idle_s, never idle that long
                    busy_for_4s.set()
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=2)

        busy = asyncio.create_task(keep_busy())
        try:
            await busy_for_4s.wait()
            person = await visitor_from(http, state, site, PERSON)
            newcomer = person[2]
            assert newcomer["kind"] == "dynamic"
            taken = {b[2]["e164"] for b in bots}
            assert newcomer["e164"] in taken
            loser = next(b for b in bots if b[2]["e164"] == newcomer["e164"])
            assert (await loser[0].until_kind("expired"))["kind"] == "expired"
        finally:
            stop.set()
            await busy
        assert await lease_addresses(state) == sorted([BOT, PERSON])


async def test_fair_share_takes_nothing_from_an_address_holding_no_more(tmp_path: Path) -> None:
    async with behind_proxy(tmp_path) as state, session() as http:
        site = await make_site(state, reserve=4, pool_max=4, max_leases_per_address=3)
        tabs = [await visitor_from(http, state, site, a) for a in (BOT, BOT, PERSON, PERSON)]
        assert [tab[2]["kind"] for tab in tabs] == ["dynamic"] * 4
        # Taking one of the bot's two would leave it one and this address three: no fairer,
        # and the bot's next visitor would take it back.
        third = await visitor_from(http, state, site, PERSON)
        assert third[2]["kind"] == "untracked"
        assert await lease_addresses(state) == sorted([BOT, BOT, PERSON, PERSON])


async def test_ipv6_addresses_in_one_64_share_the_cap(tmp_path: Path) -> None:
    async with behind_proxy(tmp_path) as state, session() as http:
        site = await make_site(state, reserve=5, pool_max=8, max_leases_per_address=None)  # cap 2
        one_customer = ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff:ee:dd:3"]
        tabs = [await visitor_from(http, state, site, a) for a in one_customer]
        assert [tab[2]["kind"] for tab in tabs] == ["dynamic", "dynamic", "untracked"]
        neighbour = await visitor_from(http, state, site, "2001:db8:1:3::1")
        assert neighbour[2]["kind"] == "dynamic"
        assert await lease_addresses(state) == [
            "2001:db8:1:2::/64",
            "2001:db8:1:2::/64",
            "2001:db8:1:3::/64",
        ]


async def test_pool_exhausted_names_the_address_holding_most_leases(tmp_path: Path) -> None:
    async with behind_proxy(tmp_path) as state, session() as http:
        site = await make_site(state, reserve=3, pool_max=3, max_leases_per_address=5)
        seen: asyncio.Queue[Event] = asyncio.Queue()
        subscription = await state.services.bus.subscribe(
            None, ["pool.exhausted"], seen.put, durable=False
        )
        try:
            tabs = [await visitor_from(http, state, site, a) for a in (BOT, PERSON, BOT)]
            assert [tab[2]["kind"] for tab in tabs] == ["dynamic"] * 3
            # The bot's third visitor finds the pool full; its own address is the top one, so
            # fair share takes nothing back for it.
            late = await visitor_from(http, state, site, BOT)
            assert late[2]["kind"] == "untracked"
            event = await asyncio.wait_for(seen.get(), timeout=10)
        finally:
            await subscription.close()
        assert event.data["site_id"] == site.id
        assert event.data["address"] == BOT
        assert (event.data["top_address"], event.data["top_address_leases"]) == (BOT, 2)
        async with state.services.db.read() as conn:
            rows = list(
                await conn.execute(
                    sa.select(t.outbox.c.payload).where(t.outbox.c.key == "pool.exhausted")
                )
            )
        assert [r.payload["data"]["top_address"] for r in rows] == [BOT]


async def test_lease_on_interaction_gives_no_number_until_want(tmp_path: Path) -> None:
    async with behind_proxy(tmp_path) as state, session() as http:
        site = await make_site(state, reserve=2, lease_on="interaction")
        tab, welcome, first = await visitor_from(http, state, site, PERSON)
        assert welcome["lease_on"] == "interaction"
        assert first["kind"] == "initial"
        await tab.send({"type": "activity"})  # a heartbeat of an open tab is no interaction
        # A second tab of the same visitor is told what the server decided meanwhile.
        second = await open_tab(http, state, headers={"X-Forwarded-For": PERSON})
        await hello(second, site, visitor=welcome["visitor"])
        assert (await second.number())["kind"] == "initial"
        assert await count(state, t.leases) == 0
        await tab.send({"type": "want"})
        dynamic = await tab.until_kind("dynamic")
        assert dynamic["e164"] in numbers(2)
        assert (await second.until_kind("dynamic"))["e164"] == dynamic["e164"]
        await second.send({"type": "want"})  # a second want takes nothing more
        await tab.send({"type": "activity"})
        assert await count(state, t.leases) == 1


async def patch_settings(
    http: aiohttp.ClientSession, state: Running, site: Site, settings: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    async with http.patch(
        f"http://127.0.0.1:{state.http_port}/api/v1/sites/{site.id}",
        json={"settings": settings},
        headers={"Authorization": "Bearer admin-secret"},
    ) as response:
        return response.status, await response.json()


async def test_max_leases_per_address_set_through_the_api_changes_the_cap_live(
    tmp_path: Path,
) -> None:
    async with behind_proxy(tmp_path) as state, session() as http:
        site = await make_site(state, reserve=6, pool_max=20, max_leases_per_address=None)
        tabs = [await visitor_from(http, state, site, BOT)]
        assert tabs[0][2]["kind"] == "dynamic"  # the default cap: 5
        status, body = await patch_settings(http, state, site, {"max_leases_per_address": 1})
        assert (status, body["settings"]["max_leases_per_address"]) == (200, 1)
        tabs.append(await visitor_from(http, state, site, BOT))
        assert tabs[-1][2]["kind"] == "untracked"
        status, _ = await patch_settings(http, state, site, {"max_leases_per_address": 3})
        assert status == 200
        tabs += [await visitor_from(http, state, site, BOT) for _ in range(3)]
        # 3 held: the first one and two new; the refused one is not served by itself
        assert [tab[2]["kind"] for tab in tabs[2:]] == ["dynamic", "dynamic", "untracked"]
        assert len(await lease_addresses(state)) == 3
        status, body = await patch_settings(http, state, site, {"max_leases_per_address": 0})
        assert status == 422
        assert "settings.max_leases_per_address" in str(body)


async def test_a_forged_forwarded_for_from_an_untrusted_peer_is_not_believed(
    tmp_path: Path,
) -> None:
    async with behind_proxy(tmp_path, trusted_proxies=("10.9.9.9",)) as state, session() as http:
        site = await make_site(state, reserve=4, pool_max=4, max_leases_per_address=None)  # cap 1
        first = await visitor_from(http, state, site, PERSON)
        second = await visitor_from(http, state, site, OTHER)
        assert (first[2]["kind"], second[2]["kind"]) == ("dynamic", "untracked")
        assert await lease_addresses(state) == ["127.0.0.1"]


async def test_a_forged_forwarded_for_line_before_the_proxys_own_is_not_believed(
    tmp_path: Path,
) -> None:
    async with behind_proxy(tmp_path) as state, session() as http:
        site = await make_site(state, reserve=4, pool_max=4, max_leases_per_address=None)  # cap 1
        tabs = []
        for forged in (PERSON, OTHER):
            headers = CIMultiDict([("X-Forwarded-For", forged), ("X-Forwarded-For", BOT)])
            ws = await http.ws_connect(
                f"http://127.0.0.1:{state.http_port}/ws",
                headers=CIMultiDict(
                    [("Origin", ORIGIN), ("User-Agent", DESKTOP_UA), *headers.items()]
                ),
            )
            tabs.append(Tab(ws))
            await hello(tabs[-1], site)
        kinds = [(await tab.number())["kind"] for tab in tabs]
        assert kinds == ["dynamic", "untracked"]  # both are the bot's, whatever they claim

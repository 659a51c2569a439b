"""The visitor websocket over real sockets against the running app: delay, tabs sharing one
number, revocation reaching every tab, hold and return, exhaustion, channel filter, crawlers,
and a restart keeping leases and due revocations."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa

from calltracking.core.kinds import AttributionKind
from calltracking.store import schema as t
from tests.store.seed import numbers
from tests.web.harness import hello, make_site, open_tab, session, tracker, web_config


async def test_initial_number_until_the_delay_then_a_dynamic_one(tmp_path: Path) -> None:
    async with tracker(web_config(tmp_path)) as state, session() as http:
        site = await make_site(state, reserve=3, show_delay_s=1)
        tab = await open_tab(http, state)
        welcome = await hello(tab, site)
        first = await tab.number()
        assert first["kind"] == "initial"
        assert first["e164"] == site.defaults[AttributionKind.INITIAL]
        assert first["display"] == "+7 (495) 000-90-01"
        dynamic = await tab.until_kind("dynamic", timeout=5)
        assert dynamic["e164"] in numbers(3)
        assert welcome["visitor"] and welcome["session"]


async def test_reload_does_not_restart_the_delay(tmp_path: Path) -> None:
    async with tracker(web_config(tmp_path)) as state, session() as http:
        site = await make_site(state, reserve=3, show_delay_s=3)
        tab = await open_tab(http, state)
        welcome = await hello(tab, site)
        assert (await tab.number())["kind"] == "initial"
        await asyncio.sleep(2)
        await tab.ws.close()
        again = await open_tab(http, state)
        reloaded = await hello(
            again, site, visitor=welcome["visitor"], referrer="https://shop.example/"
        )
        assert reloaded["session"] == welcome["session"]  # the same visit: its delay goes on
        assert (await again.number())["kind"] == "initial"
        await again.until_kind("dynamic")
        async with state.services.db.read() as conn:
            started = await conn.scalar(
                sa.select(t.visits.c.started_at).where(t.visits.c.id == welcome["session"])
            )
            assigned = await conn.scalar(sa.select(t.leases.c.assigned_at))
        assert assigned is not None
        assert started is not None
        waited = (assigned - started).total_seconds()
        # Not before the delay, and well before a delay restarted by the reload (at >= 5 s).
        assert 3 <= waited < 5


async def test_every_tab_of_a_visitor_shows_the_same_number_and_revocation_reaches_all(
    tmp_path: Path,
) -> None:
    async with tracker(web_config(tmp_path)) as state, session() as http:
        site = await make_site(state, reserve=3, idle_timeout_s=2)
        one = await open_tab(http, state)
        welcome = await hello(one, site)
        first = await one.until_kind("dynamic")
        two = await open_tab(http, state)
        await hello(two, site, visitor=welcome["visitor"])
        second = await two.until_kind("dynamic")
        assert second["e164"] == first["e164"]
        expired_one = await one.until_kind("expired", timeout=6)
        expired_two = await two.until_kind("expired", timeout=6)
        assert expired_one["e164"] == expired_two["e164"] == site.defaults[AttributionKind.EXPIRED]
        await two.send({"type": "activity"})
        back_two = await two.until_kind("dynamic")
        back_one = await one.until_kind("dynamic")
        assert back_one["e164"] == back_two["e164"]


async def test_a_visitor_returning_during_the_hold_gets_the_same_number(tmp_path: Path) -> None:
    async with tracker(web_config(tmp_path)) as state, session() as http:
        site = await make_site(state, reserve=3, hold_s=600)
        tab = await open_tab(http, state)
        welcome = await hello(tab, site)
        number = (await tab.until_kind("dynamic"))["e164"]
        await tab.ws.close()
        other = await open_tab(http, state)
        await hello(other, site)
        assert (await other.until_kind("dynamic"))["e164"] != number
        back = await open_tab(http, state)
        await hello(back, site, visitor=welcome["visitor"])
        assert (await back.until_kind("dynamic"))["e164"] == number


async def test_exhausted_pool_shows_untracked_and_the_next_free_number_goes_to_the_waiter(
    tmp_path: Path,
) -> None:
    async with tracker(web_config(tmp_path)) as state, session() as http:
        site = await make_site(state, reserve=1, pool_max=1, preempt_idle_s=3600, hold_s=0)
        holder = await open_tab(http, state)
        await hello(holder, site)
        number = (await holder.until_kind("dynamic"))["e164"]
        waiter = await open_tab(http, state)
        await hello(waiter, site)
        assert (await waiter.number())["kind"] == "untracked"
        await holder.ws.close()
        got = await waiter.until_kind("dynamic")
        assert got["e164"] == number


async def test_traffic_outside_the_channels_sees_untracked(tmp_path: Path) -> None:
    async with tracker(web_config(tmp_path)) as state, session() as http:
        site = await make_site(state, reserve=2, channels=("source=google",))
        direct = await open_tab(http, state)
        await hello(direct, site)
        assert (await direct.number())["kind"] == "untracked"
        google = await open_tab(http, state)
        await hello(google, site, url="https://shop.example/?utm_source=google&utm_medium=cpc")
        assert (await google.until_kind("dynamic"))["e164"] in numbers(2)


async def test_a_crawler_never_gets_a_dynamic_number(tmp_path: Path) -> None:
    async with tracker(web_config(tmp_path)) as state, session() as http:
        site = await make_site(state, reserve=2)
        bot = await open_tab(
            http,
            state,
            user_agent="Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        )
        await hello(bot, site)
        assert (await bot.number())["kind"] == "untracked"
        headless = await open_tab(http, state, user_agent="Mozilla/5.0 HeadlessChrome/126.0")
        await hello(headless, site)
        assert (await headless.number())["kind"] == "untracked"
        automated = await open_tab(http, state)  # a desktop user agent, but driven by WebDriver
        await hello(automated, site, automation=True)
        assert (await automated.number())["kind"] == "untracked"
        person = await open_tab(http, state)
        await hello(person, site, automation=False)
        assert (await person.until_kind("dynamic"))["kind"] == "dynamic"


async def test_lease_on_visible_waits_for_want(tmp_path: Path) -> None:
    async with tracker(web_config(tmp_path)) as state, session() as http:
        site = await make_site(state, reserve=2, lease_on="visible")
        tab = await open_tab(http, state)
        await hello(tab, site)
        assert (await tab.number())["kind"] == "initial"
        await asyncio.sleep(0.3)
        await tab.send({"type": "want"})
        assert (await tab.until_kind("dynamic"))["e164"] in numbers(2)


async def test_a_restarted_server_keeps_leases_and_due_revocations(tmp_path: Path) -> None:
    config = web_config(tmp_path)
    async with tracker(config) as state, session() as http:
        site = await make_site(state, reserve=3, idle_timeout_s=3)
        tab = await open_tab(http, state)
        welcome = await hello(tab, site)
        number = (await tab.until_kind("dynamic"))["e164"]
    async with tracker(config) as state, session() as http:
        tab = await open_tab(http, state)
        await hello(tab, site, visitor=welcome["visitor"])
        assert (await tab.until_kind("dynamic"))["e164"] == number
        assert (await tab.until_kind("expired", timeout=8))["e164"] == site.defaults[
            AttributionKind.EXPIRED
        ]

"""A robot's visit is left out of the report's visits and counted apart, read from the store."""

from __future__ import annotations

from calltracking.store.sites import get_site
from calltracking.store.visitors import Hello
from tests.api.conftest import T0, Api, visitor

GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


async def test_robot_visits_are_shown_apart_from_visits(quiet_api: Api) -> None:
    api = quiet_api
    _, token = await api.account()
    site = await api.site(token)
    await visitor(api, site["id"], T0, "https://shop.example/?utm_source=google&utm_medium=cpc")
    async with api.services.db.read() as conn:
        stored = await get_site(conn, site["id"])
    assert stored is not None
    robot = Hello(url="https://shop.example/", referrer="", user_agent=GOOGLEBOT)
    await api.services.visitors.hello(stored, robot, T0)
    since, until = "2026-03-10T00:00:00%2B03:00", "2026-03-11T00:00:00%2B03:00"
    report = await api.ok(
        "GET", f"/api/v1/sites/{site['id']}/report?since={since}&until={until}", token
    )
    assert (report["visits"], report["bot_visits"]) == (1, 1)
    assert sum(row["visits"] for row in report["by_source"]) == 1

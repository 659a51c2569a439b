"""`GET /api/v1/overview`: a site's and an account's figures for a period and the one before."""

from __future__ import annotations

from datetime import timedelta

from calltracking.core.kinds import CallStatus
from tests.api.conftest import ADMIN, T0, Api


async def test_an_overview_compares_a_window_with_the_one_before(api: Api) -> None:
    account_id, token = await api.account()
    shop = await api.site(token, base=100)
    other = await api.site(token, base=200, name="other")
    day = timedelta(days=1)
    await api.call(shop["defaults"]["initial"], "+79160000001", T0 - day)  # the previous day
    await api.call(shop["defaults"]["initial"], "+79160000002", T0)
    await api.call(shop["defaults"]["expired"], "+79160000003", T0, status=CallStatus.MISSED)
    await api.call(other["defaults"]["initial"], "+79160000004", T0)
    await api.ok("PUT", "/api/v1/qualification", token, json={"target_call_talk_s": 30})
    window = "since=2026-03-10T00:00:00%2B00:00&until=2026-03-11T00:00:00%2B00:00"

    site_view = await api.ok("GET", f"/api/v1/overview?site={shop['id']}&{window}", token)
    assert site_view["figures"]["calls"] == 2 and site_view["figures"]["missed"] == 1
    assert site_view["figures"]["target_calls"] == 1
    assert site_view["previous_figures"]["calls"] == 1
    assert site_view["trend"]["calls"] == 1.0  # twice as many
    assert site_view["previous"]["until"] == site_view["period"]["since"]
    assert site_view["top_sources"] == [
        {"source": "(no source)", "calls": 2, "previous_calls": 1, "trend": 1.0}
    ]
    assert site_view["timezone"] == "Europe/Moscow"

    account_view = await api.ok("GET", f"/api/v1/overview?{window}", token)
    assert (account_view["account_id"], account_view["site_id"]) == (account_id, None)
    assert account_view["figures"]["calls"] == 3

    preset = await api.ok("GET", "/api/v1/overview?period=30d", token)
    assert len(preset["per_day"]) == 30 and preset["period"]["preset"] == "30d"


async def test_an_overview_refuses_other_accounts_and_bad_windows(api: Api) -> None:
    _, token = await api.account()
    _, other_token = await api.account("other")
    site = await api.site(token)
    assert (await api.req("GET", f"/api/v1/overview?site={site['id']}", other_token))[0] == 404
    for query, field in (
        ("period=year", "period"),
        ("period=7d&since=2026-03-10T00:00:00%2B00:00", "period"),
        ("since=2026-03-10T00:00:00%2B00:00", "until"),
        ("since=2026-03-10T00:00:00%2B00:00&until=2026-03-09T00:00:00%2B00:00", "until"),
    ):
        status, body = await api.req("GET", f"/api/v1/overview?{query}", token)
        assert (status, body["error"]["field"]) == (422, field), query
    everyone = await api.ok("GET", "/api/v1/overview?period=today", ADMIN)
    assert everyone["account_id"] is None and everyone["timezone"] == "UTC"

"""The site report from a small seeded data set; every figure is worked out by hand below."""

from __future__ import annotations

from datetime import timedelta

from calltracking.core.kinds import CallStatus
from tests.api.conftest import T0, Api, numbers, visitor


async def test_report_figures(quiet_api: Api) -> None:
    api = quiet_api
    await api.ok("POST", "/api/v1/numbers", json={"numbers": numbers(3)})
    _, token = await api.account()
    site = await api.site(token, pool_max=2)
    d = site["defaults"]
    # Three visitors; the pool may grow to 2, so the third finds it exhausted.
    n_a = await visitor(
        api,
        site["id"],
        T0,
        "https://shop.example/?utm_source=google&utm_medium=cpc&utm_campaign=spring",
    )
    n_b = await visitor(api, site["id"], T0 + timedelta(minutes=1), "https://shop.example/")
    n_c = await visitor(api, site["id"], T0 + timedelta(minutes=2), "https://shop.example/")
    assert len({n_a, n_b}) == 2 and n_c == d["untracked"]
    minutes = [timedelta(minutes=m) for m in range(60)]
    lead = await api.call(n_a, "+79160000001", T0 + minutes[10])  # dynamic, the lead
    await api.call(n_a, "+79160000001", T0 + minutes[20])  # dynamic, same caller: no lead
    missed = await api.call(d["initial"], "+79160000002", T0 + minutes[5], status=CallStatus.MISSED)
    spam = await api.call(n_b, "+79160000003", T0 + minutes[30])  # dynamic, then marked spam
    await api.call(d["untracked"], "+79160000004", T0 + minutes[40], status=CallStatus.BUSY)
    await api.call(d["initial"], "+79160000005", T0 + timedelta(days=2))  # outside the window
    await api.ok("PATCH", f"/api/v1/calls/{spam}", token, json={"spam": True})

    since, until = "2026-03-10T11:00:00%2B03:00", "2026-03-11T12:00:00%2B03:00"
    report = await api.ok(
        "GET", f"/api/v1/sites/{site['id']}/report?since={since}&until={until}", token
    )
    assert report["site_id"] == site["id"] and report["timezone"] == "Europe/Moscow"
    assert (report["visits"], report["visitors_with_number"]) == (3, 2)
    calls = report["calls"]
    assert (calls["total"], calls["spam"]) == (4, 1)  # 5 in the window, 1 of them spam
    assert {k: n for k, n in calls["by_kind"].items() if n} == {
        "dynamic": 2,
        "initial": 1,
        "untracked": 1,
    }
    assert {s: n for s, n in calls["by_status"].items() if n} == {
        "answered": 2,
        "missed": 1,
        "busy": 1,
    }
    # tracked: the 2 dynamic calls; counted: those + initial + untracked
    assert report["accuracy"] == {"tracked": 2, "counted": 4, "ratio": 0.5, "static": 0}
    rows = {(r["source"], r["medium"], r["campaign"]): r for r in report["by_source"]}
    google = rows[("google", "cpc", "spring")]
    assert (google["visits"], google["calls"], google["tracked_calls"]) == (1, 2, 2)
    assert google["conversion"] == 2.0
    direct = rows[("(direct)", "(none)", None)]  # visitors B and C; B's only call was spam
    assert (direct["visits"], direct["calls"], direct["conversion"]) == (2, 0, 0.0)
    assert report["leads"] == 1
    assert report["leads_by_month"] == [{"month": "2026-03", "leads": 1}]
    assert report["missed"] == {"count": 1, "ids": [missed]}
    assert report["pool"] == {"size": 2, "peak_leased": 2, "exhaustion_count": 1}
    pool_advice = report["advice"]["pool_size"]
    # ran out once: the peak (2) plus 20% with at least 2 more numbers
    assert (pool_advice["value"], pool_advice["current"]) == (4, 2)
    assert "ran out" in pool_advice["reason"]
    assert set(report["advice"]) == {"show_delay_s", "idle_timeout_s", "pool_size"}
    assert len(report["accuracy_by_day"]) == 2  # 10 and 11 March, Moscow time
    call = await api.ok("GET", f"/api/v1/calls/{lead}", token)
    assert call["lead"] is True


async def test_report_window_defaults_to_the_last_30_days(api: Api) -> None:
    _, token = await api.account()
    site = await api.site(token)
    await api.call(site["defaults"]["initial"], "+79160000001", api.services.clock())
    report = await api.ok("GET", f"/api/v1/sites/{site['id']}/report", token)
    assert report["calls"]["total"] == 1 and report["pool"]["size"] == 0

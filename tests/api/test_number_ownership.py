"""Numbers stay with their owner (CONTRACT.md "Numbers", issue 11): only the admin fills the
shared reserve; numbers an account brings leave the system when its site drops them; reserve
numbers go back cooling; a number held elsewhere is a 409; `max_numbers` counts pool, static and
defaults. Driven through the operator API and the visitor websocket only."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api, defaults, numbers
from tests.store.seed import DESKTOP_UA

BROUGHT = "+74957770011"


@pytest.fixture
def api(any_api: Api) -> Api:
    return any_api  # every rule here holds on SQLite and on PostgreSQL


async def shown_number(api: Api, site: dict[str, Any]) -> dict[str, Any]:
    """A new visitor opens the site's page; returns the number frame they are shown."""
    async with api.session.ws_connect(
        api.base + "/ws", headers={"Origin": "https://shop.example", "User-Agent": DESKTOP_UA}
    ) as ws:
        hello = {"type": "hello", "site": site["key"], "visitor": None, "tab": "t1"}
        await ws.send_json({**hello, "url": "https://shop.example/", "referrer": ""})
        assert (await ws.receive_json(timeout=5))["type"] == "welcome"
        frame: dict[str, Any] = await ws.receive_json(timeout=5)
        return frame


async def all_numbers(api: Api) -> dict[str, dict[str, Any]]:
    return {n["e164"]: n for n in (await api.ok("GET", "/api/v1/numbers"))["numbers"]}


async def test_a_number_a_tenant_drops_never_reaches_another_accounts_visitors(api: Api) -> None:
    _, tenant = await api.account("tenant")
    site = await api.site(tenant, base=100, static={BROUGHT: "avito"}, cooldown_days=0)
    url = f"/api/v1/sites/{site['id']}"
    await api.ok("PATCH", url, tenant, json={"settings": {"static": {}}})
    assert BROUGHT not in await all_numbers(api)
    _, victim = await api.account("victim")
    other = await api.site(victim, base=200, pool_max=5)
    frame = await shown_number(api, other)
    assert (frame["kind"], frame["e164"]) == ("untracked", defaults(200)["untracked"])
    status, answer = await api.req(
        "POST", f"/api/v1/sites/{other['id']}/numbers", victim, json={"numbers": [BROUGHT]}
    )
    assert (status, answer["error"]["code"]) == (409, "conflict")


async def test_dropped_defaults_and_deleted_sites_take_brought_numbers_out(api: Api) -> None:
    _, tenant = await api.account("tenant")
    site = await api.site(tenant, base=100, static={BROUGHT: "avito"}, cooldown_days=0)
    url = f"/api/v1/sites/{site['id']}"
    await api.ok("PATCH", url, tenant, json={"defaults": defaults(300)})
    present = await all_numbers(api)
    assert not set(defaults(100).values()) & set(present)
    assert set(defaults(300).values()) <= set(present)
    removed = await api.ok("DELETE", f"{url}/numbers/{BROUGHT}", tenant)
    assert removed == {"e164": BROUGHT, "state": "removed"}
    assert (await api.ok("GET", url, tenant))["settings"]["static"] == {}
    await api.ok("DELETE", url, tenant)
    assert await all_numbers(api) == {}
    _, victim = await api.account("victim")
    frame = await shown_number(api, await api.site(victim, base=200))
    assert frame["kind"] == "untracked"


async def test_a_reserve_number_a_site_drops_goes_back_cooling(api: Api) -> None:
    (number,) = numbers(1)
    await api.ok("POST", "/api/v1/numbers", json={"numbers": [number]})
    _, tenant = await api.account("tenant")
    site = await api.site(tenant, base=100, static={number: "print"}, cooldown_days=7)
    await api.ok("PATCH", f"/api/v1/sites/{site['id']}", tenant, json={"settings": {"static": {}}})
    state = (await all_numbers(api))[number]
    assert (state["state"], state["cooling_site_id"]) == ("cooling", site["id"])
    _, other = await api.account("other")
    other_site = await api.site(other, base=200)
    assert (await shown_number(api, other_site))["kind"] == "untracked"
    status, answer = await api.req(
        "POST", f"/api/v1/sites/{other_site['id']}/numbers", other, json={"numbers": [number]}
    )
    assert status == 409 and "cooling down" in answer["error"]["message"]


async def test_a_number_held_anywhere_else_is_refused_with_409(api: Api) -> None:
    _, first = await api.account("first")
    held = await api.site(first, base=100, static={BROUGHT: "avito"})
    _, second = await api.account("second")
    taken_default = defaults(100)["initial"]
    attempts: list[dict[str, Any]] = [
        {"defaults": {**defaults(200), "initial": taken_default}},
        {"defaults": defaults(200), "settings": {"static": {BROUGHT: "mine"}}},
        {"defaults": defaults(200), "settings": {"static": {taken_default: "mine"}}},
    ]
    for attempt in attempts:
        body = {"name": "grab", "domains": ["shop.example"], **attempt}
        status, answer = await api.req("POST", "/api/v1/sites", second, json=body)
        assert (status, answer["error"]["code"]) == (409, "conflict"), attempt
    mine = await api.site(second, base=200)
    status, _ = await api.req(
        "PATCH",
        f"/api/v1/sites/{mine['id']}",
        second,
        json={"settings": {"static": {BROUGHT: "mine"}}},
    )
    assert status == 409
    assert (await all_numbers(api))[BROUGHT]["site_id"] == held["id"]


async def test_max_numbers_counts_static_and_defaults(api: Api) -> None:
    await api.ok("POST", "/api/v1/numbers", json={"numbers": numbers(10)})
    _, token = await api.account(max_numbers=5)
    statics = {"+74957770001": "a", "+74957770002": "b"}
    site = await api.site(token, base=100, static=statics, pool_max=5)
    url = f"/api/v1/sites/{site['id']}"
    extra = {"+74957770001": "a", "+74957770002": "b", "+74957770003": "c"}
    status, answer = await api.req("PATCH", url, token, json={"settings": {"static": extra}})
    assert status == 409 and "max_numbers" in answer["error"]["message"]
    assert set((await api.ok("GET", url, token))["settings"]["static"]) == set(extra) - {
        "+74957770003"
    }
    body = {
        "name": "b",
        "domains": ["b.example"],
        "defaults": defaults(200),
        "settings": {"pool_max": 0},
    }
    status, answer = await api.req("POST", "/api/v1/sites", token, json=body)
    assert status == 409 and "max_numbers" in answer["error"]["message"]
    status, _ = await api.req("POST", f"{url}/numbers", token, json={"count": 1})
    assert status == 409
    frame = await shown_number(api, site)  # the pool cannot grow past max_numbers either
    assert frame["kind"] == "untracked"

"""Accounts, the reserve, sites (create, PATCH merge, DELETE effects), pools and number moves."""

from __future__ import annotations

from typing import Any

import aiohttp
import sqlalchemy as sa

from calltracking.store import schema as t
from tests.api.conftest import ADMIN, T0, Api, defaults, numbers
from tests.store.seed import DESKTOP_UA


async def open_tab(
    api: Api, site: dict[str, Any]
) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    ws = await api.session.ws_connect(
        api.base + "/ws", headers={"Origin": "https://shop.example", "User-Agent": DESKTOP_UA}
    )
    await ws.send_json(
        {
            "type": "hello",
            "site": site["key"],
            "visitor": None,
            "tab": "t1",
            "url": "https://shop.example/",
            "referrer": "",
        }
    )
    welcome = await ws.receive_json(timeout=5)
    assert welcome["type"] == "welcome"
    number = await ws.receive_json(timeout=5)
    return ws, number


async def pool_states(api: Api, token: str, site_id: str) -> dict[str, str]:
    body = await api.ok("GET", f"/api/v1/sites/{site_id}/pool", token)
    return {n["e164"]: n["state"] for n in body["numbers"]}


async def test_accounts_are_created_with_a_working_token_and_listed(api: Api) -> None:
    body = await api.ok(
        "POST", "/api/v1/accounts", json={"name": "acme", "timezone": "Asia/Yekaterinburg"}
    )
    assert body["token"].startswith("ct_")
    assert (body["timezone"], body["max_numbers"], body["retention_days"]) == (
        "Asia/Yekaterinburg",
        50,
        365,
    )
    assert (await api.ok("GET", "/api/v1/sites", body["token"]))["sites"] == []
    listed = (await api.ok("GET", "/api/v1/accounts"))["accounts"]
    assert [a["id"] for a in listed] == [body["id"]]
    assert "token" not in listed[0]


async def test_reserve_adds_all_or_nothing_and_counts_repeats(api: Api) -> None:
    status, _ = await api.req("POST", "/api/v1/numbers", json={"numbers": [*numbers(2), "+7"]})
    assert status == 422
    assert (await api.ok("GET", "/api/v1/numbers"))["numbers"] == []
    first = await api.ok("POST", "/api/v1/numbers", json={"numbers": numbers(3)})
    again = await api.ok("POST", "/api/v1/numbers", json={"numbers": numbers(4)})
    assert (first, again) == (
        {"added": 3, "already_present": 0},
        {"added": 1, "already_present": 3},
    )
    listed = (await api.ok("GET", "/api/v1/numbers"))["numbers"]
    assert {(n["e164"], n["state"]) for n in listed} == {(n, "reserve") for n in numbers(4)}


async def test_site_is_created_listed_and_its_secrets_masked(api: Api) -> None:
    _, token = await api.account()
    site = await api.site(
        token,
        hold_s=60,
        analytics={"ga4": {"measurement_id": "G-ABC", "api_secret": "supersecret1234"}},
    )
    assert site["key"] and site["defaults"] == defaults(9000)
    assert site["settings"]["hold_s"] == 60
    assert site["settings"]["idle_timeout_s"] == 3600
    assert site["settings"]["analytics"]["ga4"]["api_secret"] == "****1234"
    assert f'data-site="{site["key"]}"' in site["snippet"]
    assert (await api.ok("GET", "/api/v1/sites", token))["sites"] == [site]
    assert await api.ok("GET", f"/api/v1/sites/{site['id']}", token) == site
    states = {n["e164"]: n["state"] for n in (await api.ok("GET", "/api/v1/numbers"))["numbers"]}
    assert states == dict.fromkeys(defaults(9000).values(), "default")


async def test_admin_creates_sites_for_an_account(api: Api) -> None:
    account, token = await api.account()
    body = {"name": "s", "domains": ["a.example"], "defaults": defaults(0)}
    status, answer = await api.req("POST", "/api/v1/sites", json=body)
    assert (status, answer["error"]["field"]) == (422, "account_id")
    site = await api.ok("POST", "/api/v1/sites", json={**body, "account_id": account})
    assert site["account_id"] == account
    status, answer = await api.req(
        "POST", "/api/v1/sites", token, json={**body, "account_id": account}
    )
    assert (status, answer["error"]["field"]) == (422, "account_id")


async def test_a_default_number_of_another_site_is_a_conflict(api: Api) -> None:
    _, token = await api.account()
    await api.site(token, base=100)
    status, answer = await api.req(
        "POST",
        "/api/v1/sites",
        token,
        json={"name": "b", "domains": ["b.example"], "defaults": defaults(100)},
    )
    assert status == 409
    assert defaults(100)["initial"] in answer["error"]["message"]


async def test_patch_merges_settings_key_by_key_and_replaces_targets_whole(api: Api) -> None:
    _, token = await api.account()
    site = await api.site(
        token,
        hold_s=60,
        show_delay_s=5,
        analytics={
            "ga4": {"measurement_id": "G-1", "api_secret": "secret-one"},
            "metrika": {"counter_id": "42", "token": "tok-metrika", "extended_threshold": True},
        },
    )
    patched = await api.ok(
        "PATCH",
        f"/api/v1/sites/{site['id']}",
        token,
        json={
            "name": "renamed",
            "settings": {
                "show_delay_s": 7,
                "analytics": {"ga4": {"measurement_id": "G-2", "api_secret": "secret-two"}},
            },
        },
    )
    settings = patched["settings"]
    assert patched["name"] == "renamed"
    assert (settings["show_delay_s"], settings["hold_s"]) == (7, 60)
    assert settings["analytics"]["ga4"] == {"measurement_id": "G-2", "api_secret": "****-two"}
    assert settings["analytics"]["metrika"]["counter_id"] == "42"
    assert settings["analytics"]["metrika"]["extended_threshold"] is True
    again = await api.ok(
        "PATCH",
        f"/api/v1/sites/{site['id']}",
        token,
        json={"settings": {"analytics": {"metrika": {"counter_id": "43", "token": "t2"}}}},
    )
    assert again["settings"]["analytics"]["metrika"]["extended_threshold"] is False
    assert again["settings"]["analytics"]["ga4"]["measurement_id"] == "G-2"
    assert again["settings"]["show_delay_s"] == 7
    status, answer = await api.req(
        "PATCH", f"/api/v1/sites/{site['id']}", token, json={"settings": {"pool_max": 51}}
    )
    assert (status, answer["error"]["field"]) == (422, "settings.pool_max")


async def test_patch_claims_and_releases_static_numbers(api: Api) -> None:
    await api.ok("POST", "/api/v1/numbers", json={"numbers": numbers(2)})
    _, token = await api.account()
    site = await api.site(token)
    first, second = numbers(2)
    url = f"/api/v1/sites/{site['id']}"
    await api.ok("PATCH", url, token, json={"settings": {"static": {first: "avito/listing"}}})
    assert await pool_states(api, token, site["id"]) == {first: "static"}
    await api.ok("PATCH", url, token, json={"settings": {"static": {second: "print/flyer"}}})
    assert await pool_states(api, token, site["id"]) == {second: "static"}
    reserve = {n["e164"]: n for n in (await api.ok("GET", "/api/v1/numbers"))["numbers"]}
    assert reserve[first]["state"] == "cooling"
    assert reserve[first]["cooling_site_id"] == site["id"]
    status, answer = await api.req(
        "PATCH",
        url,
        token,
        json={"settings": {"static": {defaults(9000)["initial"]: "x"}}},
    )
    assert status == 409 and defaults(9000)["initial"] in answer["error"]["message"]


async def test_number_moves_are_all_or_nothing_and_name_the_problem(api: Api) -> None:
    await api.ok("POST", "/api/v1/numbers", json={"numbers": numbers(5)})
    _, token = await api.account()
    shop = await api.site(token, base=100)
    other = await api.site(token, base=200, name="other")
    one, two, three = numbers(3)
    moved = await api.ok(
        "POST", f"/api/v1/sites/{other['id']}/numbers", token, json={"numbers": [one]}
    )
    assert moved == {"added": [one], "pool_size": 1}
    missing = "+74959999999"
    status, answer = await api.req(
        "POST",
        f"/api/v1/sites/{shop['id']}/numbers",
        token,
        json={"numbers": [two, one, missing]},
    )
    assert status == 409 and answer["error"]["code"] == "conflict"
    assert one in answer["error"]["message"] and missing in answer["error"]["message"]
    assert two not in answer["error"]["message"]
    assert await pool_states(api, token, shop["id"]) == {}  # nothing moved
    status, answer = await api.req(
        "POST", f"/api/v1/sites/{shop['id']}/numbers", token, json={"count": 5}
    )
    assert status == 409 and "4" in answer["error"]["message"]
    moved = await api.ok("POST", f"/api/v1/sites/{shop['id']}/numbers", token, json={"count": 2})
    assert moved["added"] == [two, three]
    assert await pool_states(api, token, shop["id"]) == {two: "free", three: "free"}


async def test_account_max_numbers_and_pool_max_bound_moves(api: Api) -> None:
    await api.ok("POST", "/api/v1/numbers", json={"numbers": numbers(5)})
    _, token = await api.account(max_numbers=3)
    site = await api.site(token, pool_max=2)
    status, answer = await api.req(
        "POST", f"/api/v1/sites/{site['id']}/numbers", token, json={"count": 3}
    )
    assert status == 409 and "pool_max" in answer["error"]["message"]


async def test_released_number_cools_down_for_other_sites_only(api: Api) -> None:
    await api.ok("POST", "/api/v1/numbers", json={"numbers": numbers(1)})
    _, token = await api.account()
    shop = await api.site(token, base=100)
    other = await api.site(token, base=200, name="other")
    (number,) = numbers(1)
    await api.ok("POST", f"/api/v1/sites/{shop['id']}/numbers", token, json={"count": 1})
    released = await api.ok("DELETE", f"/api/v1/sites/{shop['id']}/numbers/{number}", token)
    assert (released["state"], released["cooling_site_id"]) == ("cooling", shop["id"])
    status, answer = await api.req(
        "POST", f"/api/v1/sites/{other['id']}/numbers", token, json={"numbers": [number]}
    )
    assert status == 409 and f"{number} is cooling down" in answer["error"]["message"]
    status, _ = await api.req(
        "POST", f"/api/v1/sites/{other['id']}/numbers", token, json={"count": 1}
    )
    assert status == 409
    await api.ok("POST", f"/api/v1/sites/{shop['id']}/numbers", token, json={"numbers": [number]})
    status, answer = await api.req(
        "DELETE", f"/api/v1/sites/{shop['id']}/numbers/+74950000000", token
    )
    assert (status, answer["error"]["code"]) == (404, "not_found")
    status, answer = await api.req(
        "DELETE", f"/api/v1/sites/{shop['id']}/numbers/84951110001", token
    )
    assert (status, answer["error"]["field"]) == (422, "e164")


async def test_pool_lists_free_leased_held_and_static(api: Api) -> None:
    await api.ok("POST", "/api/v1/numbers", json={"numbers": numbers(3)})
    _, token = await api.account()
    one, two, three = numbers(3)
    site = await api.site(token, static={three: "avito/listing"})
    await api.ok("POST", f"/api/v1/sites/{site['id']}/numbers", token, json={"numbers": [one, two]})
    ws, shown = await open_tab(api, site)
    assert (shown["kind"], shown["e164"]) == ("dynamic", one)
    pool = (await api.ok("GET", f"/api/v1/sites/{site['id']}/pool", token))["numbers"]
    leased = next(n for n in pool if n["e164"] == one)
    assert leased["visitor"] and leased["leased_since"]
    assert await pool_states(api, token, site["id"]) == {
        one: "leased",
        two: "free",
        three: "static",
    }
    await ws.close()
    for _ in range(100):
        states = await pool_states(api, token, site["id"])
        if states[one] == "held":
            break
    assert states == {one: "held", two: "free", three: "static"}
    held = next(
        n
        for n in (await api.ok("GET", f"/api/v1/sites/{site['id']}/pool", token))["numbers"]
        if n["e164"] == one
    )
    assert held["visitor"] == leased["visitor"] and held["last_released_at"]


async def test_lowering_pool_max_returns_free_numbers_and_keeps_leased(api: Api) -> None:
    await api.ok("POST", "/api/v1/numbers", json={"numbers": numbers(3)})
    _, token = await api.account()
    site = await api.site(token)
    await api.ok("POST", f"/api/v1/sites/{site['id']}/numbers", token, json={"count": 3})
    ws, shown = await open_tab(api, site)
    await api.ok("PATCH", f"/api/v1/sites/{site['id']}", token, json={"settings": {"pool_max": 1}})
    assert await pool_states(api, token, site["id"]) == {shown["e164"]: "leased"}
    await api.ok("PATCH", f"/api/v1/sites/{site['id']}", token, json={"settings": {"pool_max": 0}})
    assert await pool_states(api, token, site["id"]) == {shown["e164"]: "leased"}
    await ws.close()


async def test_pool_min_keeps_numbers_in_the_pool_as_far_as_the_reserve_allows(api: Api) -> None:
    await api.ok("POST", "/api/v1/numbers", json={"numbers": numbers(3)})
    _, token = await api.account()
    site = await api.site(token, pool_min=2)
    assert await pool_states(api, token, site["id"]) == {n: "free" for n in numbers(2)}
    await api.ok("PATCH", f"/api/v1/sites/{site['id']}", token, json={"settings": {"pool_min": 5}})
    # only one more reserve number exists: the pool takes it and stops there
    assert await pool_states(api, token, site["id"]) == {n: "free" for n in numbers(3)}


async def test_delete_site_closes_sockets_ends_leases_and_cools_the_pool(api: Api) -> None:
    await api.ok("POST", "/api/v1/numbers", json={"numbers": numbers(2)})
    _, token = await api.account()
    site = await api.site(token, base=100)
    await api.ok("POST", f"/api/v1/sites/{site['id']}/numbers", token, json={"count": 2})
    ws, shown = await open_tab(api, site)
    call_id = await api.call(shown["e164"], "+79161234567", api.services.clock())
    deleted = await api.ok("DELETE", f"/api/v1/sites/{site['id']}", token)
    assert deleted == {
        "id": site["id"],
        "deleted": True,
        "leases_ended": 1,
        "numbers_returned": 2,  # the pool, from the reserve
        "numbers_removed": 3,  # the defaults the account brought
    }
    message = await ws.receive(timeout=5)
    assert message.type == aiohttp.WSMsgType.CLOSE and message.data == 4410
    async with api.services.db.read() as conn:
        reasons = list((await conn.execute(sa.select(t.leases.c.end_reason))).scalars())
    assert reasons == ["site_deleted"]
    status, _ = await api.req("GET", f"/api/v1/sites/{site['id']}", token)
    assert status == 404
    assert (await api.ok("GET", "/api/v1/sites", token))["sites"] == []
    call = await api.ok("GET", f"/api/v1/calls/{call_id}", token)
    assert call["site_id"] == site["id"] and call["attribution"]["kind"] == "dynamic"
    states = {n["e164"]: n for n in (await api.ok("GET", "/api/v1/numbers"))["numbers"]}
    assert {states[n]["state"] for n in numbers(2)} == {"cooling"}
    assert not set(defaults(100).values()) & set(states)
    other = await api.site(token, base=200, name="other")
    status, answer = await api.req(
        "POST", f"/api/v1/sites/{other['id']}/numbers", token, json={"numbers": [shown["e164"]]}
    )
    assert status == 409 and f"{shown['e164']} is cooling down" in answer["error"]["message"]
    status, _ = await api.req("DELETE", f"/api/v1/sites/{site['id']}", token)
    assert status == 404


async def test_admin_sees_every_accounts_sites(api: Api) -> None:
    _, token_a = await api.account("a")
    _, token_b = await api.account("b")
    a = await api.site(token_a, base=100)
    b = await api.site(token_b, base=200)
    listed = (await api.ok("GET", "/api/v1/sites", ADMIN))["sites"]
    assert {s["id"] for s in listed} == {a["id"], b["id"]}
    assert T0.year == 2026

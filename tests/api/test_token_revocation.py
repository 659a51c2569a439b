"""`DELETE /api/v1/tokens/{prefix}`: the admin revokes any token, an account its own; another
account's token answers 404; a revoked token gets 401 from the next request on."""

from __future__ import annotations

from tests.api.conftest import Api


async def test_an_account_revokes_its_own_token_and_it_stops_working_at_once(api: Api) -> None:
    _, token = await api.account()
    await api.ok("GET", "/api/v1/sites", token)
    revoked = await api.ok("DELETE", f"/api/v1/tokens/{token[:12]}", token)
    assert revoked["prefix"] == token[:12] and revoked["admin"] is False
    status, answer = await api.req("GET", "/api/v1/sites", token)
    assert (status, answer["error"]["code"]) == (401, "unauthorized")


async def test_the_admin_revokes_any_token_by_prefix_or_whole(api: Api) -> None:
    _, first = await api.account("first")
    _, second = await api.account("second")
    await api.ok("DELETE", f"/api/v1/tokens/{first[:12]}")
    again = await api.ok("DELETE", f"/api/v1/tokens/{second}")
    assert again["prefix"] == second[:12]
    for token in (first, second):
        status, _ = await api.req("GET", "/api/v1/sites", token)
        assert status == 401


async def test_another_accounts_token_is_not_found_and_keeps_working(api: Api) -> None:
    _, mine = await api.account("mine")
    _, theirs = await api.account("theirs")
    for name in (theirs[:12], theirs, "ct_nobodysmade"):
        status, answer = await api.req("DELETE", f"/api/v1/tokens/{name}", mine)
        assert (status, answer["error"]["code"]) == (404, "not_found")
    await api.ok("GET", "/api/v1/sites", theirs)
    status, answer = await api.req("DELETE", "/api/v1/tokens/ct_short", mine)
    assert (status, answer["error"]["field"]) == (422, "prefix")

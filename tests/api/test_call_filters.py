"""The calls list's filters run in the database (a match on any page, a total of all pages),
tags and the target-call rule, and the live feed of calls over server-sent events."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp

from calltracking.core.kinds import CallStatus
from tests.api.conftest import ADMIN, T0, Api, numbers, serving, visitor

NEWSLETTER = "https://shop.example/?utm_source=newsletter&utm_medium=email&utm_campaign=Spring_Sale"


async def test_a_source_filter_finds_the_match_behind_56_newer_calls(quiet_api: Api) -> None:
    api = quiet_api
    await api.ok("POST", "/api/v1/numbers", json={"numbers": numbers(2)})
    _, token = await api.account()
    site = await api.site(token, pool_min=1, pool_max=2)
    await api.ok("POST", f"/api/v1/sites/{site['id']}/numbers", token, json={"count": 1})
    shown = await visitor(api, site["id"], T0, NEWSLETTER)
    match = await api.call(shown, "+79160000001", T0 + timedelta(minutes=1))
    for i in range(56):
        await api.call(site["defaults"]["initial"], None, T0 + timedelta(minutes=2 + i))
    everything = await api.ok("GET", "/api/v1/calls?limit=50", token)
    assert everything["total"] == 57 and match not in {c["id"] for c in everything["calls"]}
    for query in ("source=NewsLetter", "medium=email", "campaign=spring_", "text=newsletter"):
        page = await api.ok("GET", f"/api/v1/calls?{query}&limit=50", token)
        assert ([c["id"] for c in page["calls"]], page["total"]) == ([match], 1), query
    assert (await api.ok("GET", "/api/v1/calls?campaign=spring%25", token))["total"] == 0


async def test_number_caller_and_text_filters_match_digits_and_words(api: Api) -> None:
    _, token = await api.account()
    site = await api.site(token, base=300)
    a = await api.call(site["defaults"]["initial"], "+79161112233", T0)
    b = await api.call(site["defaults"]["expired"], "+79165550000", T0 + timedelta(minutes=1))
    await api.ok("PATCH", f"/api/v1/calls/{b}", token, json={"note": "Asked for a Quote"})

    async def found(query: str) -> set[str]:
        body = await api.ok("GET", f"/api/v1/calls?{query}", token)
        assert body["total"] == len(body["calls"])
        return {c["id"] for c in body["calls"]}

    assert await found("caller=1112233") == {a}
    assert await found("caller=%2B7%20916%20555") == {b}
    assert await found(f"number={site['defaults']['expired'][-6:]}") == {b}
    assert await found("text=quote") == {b}
    assert await found("text=5550000") == {b}
    status, body = await api.req("GET", "/api/v1/calls?text=" + "x" * 201, token)
    assert (status, body["error"]["field"]) == (422, "text")
    status, body = await api.req("GET", "/api/v1/calls?target=yes", token)
    assert (status, body["error"]["field"]) == (422, "target")


async def test_tags_are_defined_by_the_account_set_on_calls_and_filtered(api: Api) -> None:
    account_id, token = await api.account()
    other_id, other_token = await api.account("other")
    site = await api.site(token, base=400)
    call = await api.call(site["defaults"]["initial"], "+79160000001", T0)
    plain = await api.call(site["defaults"]["initial"], "+79160000002", T0 + timedelta(minutes=1))
    status, body = await api.req("PATCH", f"/api/v1/calls/{call}", token, json={"tags": ["VIP"]})
    assert (status, body["error"]["field"]) == (422, "tags") and "VIP" in body["error"]["message"]
    q = await api.ok("PUT", "/api/v1/qualification", token, json={"tags": ["VIP", " sale  lost "]})
    assert q == {"account_id": account_id, "tags": ["VIP", "sale lost"], "target_call_talk_s": None}
    tagged = await api.ok("PATCH", f"/api/v1/calls/{call}", token, json={"tags": ["vip", "VIP"]})
    assert tagged["tags"] == ["VIP"] and tagged["target_call"] is None
    page = await api.ok("GET", "/api/v1/calls?tag=vip", token)
    assert [c["id"] for c in page["calls"]] == [call] and page["total"] == 1
    plain_body = await api.ok("GET", f"/api/v1/calls/{plain}", token)
    assert plain_body["tags"] == []
    # another account neither sees nor changes these tags; the admin must name the account
    other = await api.ok("GET", "/api/v1/qualification", other_token)
    assert (other["account_id"], other["tags"]) == (other_id, [])
    status, _ = await api.req("GET", f"/api/v1/qualification?account={account_id}", other_token)
    assert status == 404
    status, body = await api.req("GET", "/api/v1/qualification", ADMIN)
    assert (status, body["error"]["field"]) == (422, "account")
    admin_view = await api.ok("GET", f"/api/v1/qualification?account={account_id}", ADMIN)
    assert admin_view["tags"] == ["VIP", "sale lost"]
    # a tag the account drops leaves its calls
    await api.ok("PUT", "/api/v1/qualification", token, json={"tags": ["sale lost"]})
    assert (await api.ok("GET", f"/api/v1/calls/{call}", token))["tags"] == []
    for bad in ({"tags": "VIP"}, {"tags": [""]}, {"tags": ["x" * 41]}, {"target_call_talk_s": 0}):
        status, _ = await api.req("PUT", "/api/v1/qualification", token, json=bad)
        assert status == 422, bad


async def test_the_target_call_rule_qualifies_answered_calls_that_talked_long_enough(
    api: Api,
) -> None:
    _, token = await api.account()
    site = await api.site(token, base=500)
    talked = await api.call(site["defaults"]["initial"], "+79160000001", T0)  # talk 60 s
    missed = await api.call(
        site["defaults"]["initial"], "+79160000002", T0, status=CallStatus.MISSED
    )
    assert (await api.ok("GET", "/api/v1/calls?target=true", token))["total"] == 0
    await api.ok("PUT", "/api/v1/qualification", token, json={"target_call_talk_s": 60})

    async def target(call_id: str) -> Any:
        return (await api.ok("GET", f"/api/v1/calls/{call_id}", token))["target_call"]

    assert (await target(talked), await target(missed)) == (True, False)
    ids = {c["id"] for c in (await api.ok("GET", "/api/v1/calls?target=true", token))["calls"]}
    assert ids == {talked}
    ids = {c["id"] for c in (await api.ok("GET", "/api/v1/calls?target=false", token))["calls"]}
    assert ids == {missed}
    await api.ok("PUT", "/api/v1/qualification", token, json={"target_call_talk_s": 61})
    assert await target(talked) is False
    await api.ok("PATCH", f"/api/v1/calls/{talked}", token, json={"spam": True})
    await api.ok("PUT", "/api/v1/qualification", token, json={"target_call_talk_s": 30})
    assert await target(talked) is False  # spam is never a target call


async def _events(response: aiohttp.ClientResponse) -> Any:
    """Server-sent events as (event, data) pairs, as they arrive."""
    name, data = "", ""
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and name:
            yield name, json.loads(data)
            name, data = "", ""


async def test_the_live_feed_sends_new_calls_that_match_the_filters_and_the_token(
    api: Api,
) -> None:
    _, token = await api.account()
    _, other_token = await api.account("other")
    site = await api.site(token, base=600)
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{api.base}/api/v1/calls/stream?status=missed"
    async with api.session.get(url, headers=headers) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = _events(response)
        assert (await anext(events))[0] == "ready"
        await api.call(site["defaults"]["initial"], "+79160000001", T0)  # answered: filtered out
        missed = await api.call(
            site["defaults"]["initial"], "+79160000002", T0, status=CallStatus.MISSED
        )
        name, call = await anext(events)
        while call["status"] != "missed":  # the ringing phase of the missed call comes first
            name, call = await anext(events)
        assert (name, call["id"]) == ("call", missed)
        assert call["site_id"] == site["id"] and "tags" in call
    other_headers = {"Authorization": f"Bearer {other_token}"}
    async with api.session.get(f"{api.base}/api/v1/calls/stream", headers=other_headers) as other:
        events = _events(other)
        assert (await anext(events))[0] == "ready"
        await api.call(site["defaults"]["initial"], "+79160000003", T0)
        marker_site = await api.site(other_token, base=700, name="theirs")
        theirs = await api.call(marker_site["defaults"]["initial"], "+79160000004", T0)
        # the first call this token is sent is its own: the other account's never arrive
        assert (await anext(events))[1]["id"] == theirs
    status, body = await api.req("GET", "/api/v1/calls/stream?kind=nope", token)
    assert (status, body["error"]["field"]) == (422, "kind")
    assert (await api.req("GET", "/api/v1/calls/stream", None))[0] == 401


async def test_shutting_down_ends_an_open_stream(tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as http:
        async with serving(tmp_path) as api:
            _, token = await api.account()
            headers = {"Authorization": f"Bearer {token}"}
            response = await http.get(f"{api.base}/api/v1/calls/stream", headers=headers)
            events = _events(response)
            assert (await anext(events))[0] == "ready"
        # the server has stopped: the stream ends cleanly instead of waiting to be cut
        assert [event async for event in events] == []
        response.release()

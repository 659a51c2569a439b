"""Tags and target calls go out with the exports: GA4 event parameters within GA4's limits, and
the call body that webhooks receive (the bus event's data)."""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa

from calltracking.exporters.ga4 import MAX_PARAMS, MAX_VALUE_LEN, validate_ga4_payload
from calltracking.store import schema as t
from tests.api.conftest import T0, Api
from tests.api.conftest import api as api  # the real tracker, for the webhook body
from tests.exporters import NOW, make_call
from tests.exporters.test_ga4 import payload_of


def test_ga4_carries_the_target_call_and_the_tags_when_there_are_any() -> None:
    plain = payload_of(make_call())["events"][0]["params"]
    assert "target_call" not in plain and "tags" not in plain  # no rule, no tags: nothing
    call = dataclasses.replace(make_call(), tags=("sale", "VIP"), target_call=True)
    payload = payload_of(call)
    params = payload["events"][0]["params"]
    assert (params["target_call"], params["tags"]) == (1, "sale, VIP")
    assert len(params) <= MAX_PARAMS and validate_ga4_payload(payload, NOW) == []
    missed = dataclasses.replace(make_call(), target_call=False)
    assert payload_of(missed)["events"][0]["params"]["target_call"] == 0


def test_ga4_cuts_many_tags_to_the_value_limit() -> None:
    call = dataclasses.replace(make_call(), tags=tuple(f"tag number {i}" for i in range(30)))
    payload = payload_of(call)
    assert len(payload["events"][0]["params"]["tags"]) == MAX_VALUE_LEN
    assert validate_ga4_payload(payload, NOW) == []


async def test_the_webhook_body_of_an_ended_call_says_whether_it_was_a_target_call(
    api: Api,
) -> None:
    _, token = await api.account()
    site = await api.site(token)
    await api.ok("PUT", "/api/v1/qualification", token, json={"target_call_talk_s": 45})
    call_id = await api.call(site["defaults"]["initial"], "+79160000001", T0)  # talked 60 s
    async with api.services.db.read() as conn:
        rows = await conn.execute(
            sa.select(t.outbox.c.key, t.outbox.c.payload).where(t.outbox.c.key == "call.ended")
        )
        ended = [payload for _key, payload in rows]
    [event] = [e for e in ended if e["data"]["id"] == call_id]
    assert event["data"]["target_call"] is True and event["data"]["tags"] == []

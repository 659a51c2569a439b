"""Calls: listing with filters and cursor, one call, spam and notes, export retries, leads, and
erasing a caller."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from calltracking.core.kinds import CallStatus
from calltracking.store import schema as t
from tests.api.conftest import MONITOR, T0, Api, numbers, visitor

GA4 = {"ga4": {"measurement_id": "G-1", "api_secret": "s3cret"}}


async def test_calls_page_newest_first_with_a_cursor(api: Api) -> None:
    _, token = await api.account()
    site = await api.site(token)
    did = site["defaults"]["initial"]
    ids = [await api.call(did, f"+7916000000{i}", T0 + timedelta(minutes=i)) for i in range(5)]
    # two calls at the same instant: the id breaks the tie, none is skipped or repeated
    ids.append(await api.call(did, "+79160000009", T0 + timedelta(minutes=4)))
    seen: list[str] = []
    url = "/api/v1/calls?limit=2"
    pages = 0
    while url:
        body = await api.ok("GET", url, token)
        seen += [c["id"] for c in body["calls"]]
        pages += 1
        url = f"/api/v1/calls?limit=2&cursor={body['next']}" if body["next"] else ""
    assert pages == 3
    assert sorted(seen) == sorted(ids) and len(seen) == 6
    started = [(await api.ok("GET", f"/api/v1/calls/{i}", token))["started_at"] for i in seen]
    assert started == sorted(started, reverse=True)
    default_page = await api.ok("GET", "/api/v1/calls", token)
    assert len(default_page["calls"]) == 6 and default_page["next"] is None


async def test_call_filters(api: Api) -> None:
    await api.ok("POST", "/api/v1/numbers", json={"numbers": numbers(1)})
    _, token = await api.account()
    shop = await api.site(token, base=100)
    other = await api.site(token, base=200, name="other")
    a = await api.call(shop["defaults"]["initial"], "+79160000001", T0)
    b = await api.call(
        shop["defaults"]["expired"],
        "+79160000002",
        T0 + timedelta(hours=1),
        status=CallStatus.MISSED,
    )
    c = await api.call(other["defaults"]["untracked"], "+79160000003", T0 + timedelta(hours=2))

    async def ids(query: str) -> set[str]:
        body = await api.ok("GET", f"/api/v1/calls?{query}", token)
        return {call["id"] for call in body["calls"]}

    assert await ids(f"site={shop['id']}") == {a, b}
    assert await ids("since=2026-03-10T10:00:00%2B00:00") == {b, c}  # inclusive
    assert await ids("until=2026-03-10T13:00:00%2B03:00") == {a}  # exclusive, offset honoured
    assert await ids("kind=expired") == {b}
    assert await ids("status=missed") == {b}
    assert await ids("status=answered&kind=untracked") == {c}


async def test_a_call_is_the_contract_object(api: Api) -> None:
    _, token = await api.account()
    site = await api.site(token)
    call_id = await api.call(site["defaults"]["initial"], "+79161234567", T0)
    call = await api.ok("GET", f"/api/v1/calls/{call_id}", token)
    assert call["did"] == site["defaults"]["initial"] and call["caller"] == "+79161234567"
    assert (call["status"], call["duration_s"], call["talk_s"]) == ("answered", 65, 60)
    assert call["answered_by"] == "PJSIP/101"
    assert call["attribution"]["kind"] == "initial" and call["attribution"]["session"] is None
    assert call["recording_url"] is None
    assert call["exports"] == {"ga4": "not_configured", "metrika": "not_configured"}
    for key in ("first_time_caller", "lead", "spam", "reconciled", "answered_at", "ended_at"):
        assert key in call


async def test_spam_leaves_leads_and_exports_and_unmarking_restores(api: Api) -> None:
    await api.ok("POST", "/api/v1/numbers", json={"numbers": numbers(2)})
    account, token = await api.account()
    site = await api.site(token, analytics=GA4)
    shown = await visitor(
        api, site["id"], T0, "https://shop.example/?utm_source=google&utm_medium=cpc"
    )
    call_id = await api.call(shown, "+79161234567", T0 + timedelta(minutes=1))
    call = await api.ok("GET", f"/api/v1/calls/{call_id}", token)
    assert call["attribution"]["kind"] == "dynamic" and call["lead"] is True
    assert call["attribution"]["session"]["source"] == "google"
    assert call["exports"] == {"ga4": "pending", "metrika": "not_configured"}
    leads = await api.ok("GET", f"/api/v1/accounts/{account}/leads?month=2026-03", token)
    assert (leads["leads"], leads["timezone"]) == (1, "Europe/Moscow")
    assert [c["id"] for c in leads["calls"]] == [call_id]

    patched = await api.ok(
        "PATCH", f"/api/v1/calls/{call_id}", token, json={"spam": True, "note": "robot"}
    )
    assert (patched["spam"], patched["lead"], patched["exports"]["ga4"]) == (True, False, "skipped")
    assert patched["note"] == "robot"
    leads = await api.ok("GET", f"/api/v1/accounts/{account}/leads?month=2026-03", token)
    assert leads["leads"] == 0
    async with api.services.db.read() as conn:
        note = await conn.scalar(sa.select(t.calls.c.note).where(t.calls.c.id == call_id))
    assert note == "robot"

    restored = await api.ok("PATCH", f"/api/v1/calls/{call_id}", token, json={"spam": False})
    assert (restored["lead"], restored["exports"]["ga4"]) == (True, "pending")
    admin_leads = await api.ok("GET", f"/api/v1/accounts/{account}/leads?month=2026-03")
    assert admin_leads["leads"] == 1
    other = await api.ok("GET", f"/api/v1/accounts/{account}/leads?month=2026-04", token)
    assert other["leads"] == 0


async def test_retry_sets_failed_exports_back_to_pending(api: Api) -> None:
    await api.ok("POST", "/api/v1/numbers", json={"numbers": numbers(1)})
    _, token = await api.account()
    site = await api.site(token, analytics=GA4)
    shown = await visitor(api, site["id"], T0, "https://shop.example/")
    call_id = await api.call(shown, "+79161234567", T0 + timedelta(minutes=1))
    url = f"/api/v1/calls/{call_id}/exports/ga4/retry"
    status, answer = await api.req("POST", url, token)
    assert status == 409 and "pending" in answer["error"]["message"]
    async with api.services.db.write() as conn:
        await conn.execute(
            t.exports.update()
            .where(t.exports.c.call_id == call_id, t.exports.c.target == "ga4")
            .values(state="failed", attempts=8, last_error="HTTP 400")
        )
    assert await api.ok("POST", url, token) == {
        "call_id": call_id,
        "target": "ga4",
        "state": "pending",
    }
    call = await api.ok("GET", f"/api/v1/calls/{call_id}", token)
    assert call["exports"]["ga4"] == "pending"
    status, _ = await api.req("POST", f"/api/v1/calls/{call_id}/exports/metrika/retry", token)
    assert status == 409  # not configured
    status, answer = await api.req("POST", f"/api/v1/calls/{call_id}/exports/fax/retry", token)
    assert (status, answer["error"]["code"]) == (404, "not_found")


async def test_erasing_a_caller_forgets_the_number_and_deletes_recordings(api: Api) -> None:
    _, token = await api.account("a")
    _, token_b = await api.account("b")
    site = await api.site(token, base=100)
    site_b = await api.site(token_b, base=200)
    caller = "+79161234567"
    path = api.put_recording("2026/03/10/call-1.wav")
    first = await api.call(
        site["defaults"]["initial"], caller, T0, recording=f"{MONITOR}/2026/03/10/call-1.wav"
    )
    second = await api.call(site["defaults"]["initial"], caller, T0 + timedelta(hours=1))
    kept = await api.call(site["defaults"]["initial"], "+79160000000", T0)
    elsewhere = await api.call(site_b["defaults"]["initial"], caller, T0)
    assert (await api.ok("GET", f"/api/v1/calls/{first}", token))["recording_url"]
    erased = await api.ok("DELETE", f"/api/v1/callers/{caller}", token)
    assert erased == {"calls": 2, "recordings_deleted": 1}
    assert not path.exists()
    for call_id in (first, second):
        call = await api.ok("GET", f"/api/v1/calls/{call_id}", token)
        assert (call["caller"], call["recording_url"]) == (None, None)
    assert (await api.ok("GET", f"/api/v1/calls/{kept}", token))["caller"] == "+79160000000"
    assert (await api.ok("GET", f"/api/v1/calls/{elsewhere}", token_b))["caller"] == caller
    async with api.services.db.read() as conn:
        bodies = (
            (await conn.execute(sa.select(t.outbox.c.payload).where(t.outbox.c.key.like("call.%"))))
            .scalars()
            .all()
        )
    callers = {b["data"]["id"]: b["data"]["caller"] for b in bodies}
    assert callers[first] is None  # the stored event bodies forget the number too
    assert callers[second] is None
    assert callers[elsewhere] == caller
    assert await api.ok("DELETE", f"/api/v1/callers/{caller}", token) == {
        "calls": 0,
        "recordings_deleted": 0,
    }

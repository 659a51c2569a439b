"""Token rules, strict validation (one table of bad bodies), limits, and the OpenAPI document."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from calltracking.bus.memory import MemoryBus
from calltracking.config import Config
from calltracking.services import Services
from calltracking.store.db import Database
from tests.api.conftest import ADMIN, T0, Api, defaults, numbers
from web.app import create_app


async def test_no_token_and_wrong_token_are_401(api: Api) -> None:
    for token in (None, "wrong"):
        status, body = await api.req("GET", "/api/v1/sites", token)
        assert status == 401
        assert body["error"]["code"] == "unauthorized"
    status, _ = await api.req("GET", "/api/v1/sites", None, headers={"Authorization": "Basic x"})
    assert status == 401


async def test_account_token_on_admin_endpoints_is_403(api: Api) -> None:
    _, token = await api.account()
    for method, path, body in (
        ("POST", "/api/v1/accounts", {"name": "x"}),
        ("GET", "/api/v1/accounts", None),
        ("POST", "/api/v1/numbers", {"numbers": numbers(1)}),
        ("GET", "/api/v1/numbers", None),
    ):
        status, answer = await api.req(method, path, token, json=body)
        assert (status, answer["error"]["code"]) == (403, "forbidden"), path


async def test_other_accounts_objects_answer_404(api: Api) -> None:
    await api.ok("POST", "/api/v1/numbers", json={"numbers": numbers(3)})
    account_a, token_a = await api.account("a")
    _, token_b = await api.account("b")
    site = await api.site(token_a)
    call_id = await api.call(site["defaults"]["initial"], "+79161234567", T0)
    for method, path in (
        ("GET", f"/api/v1/sites/{site['id']}"),
        ("PATCH", f"/api/v1/sites/{site['id']}"),
        ("DELETE", f"/api/v1/sites/{site['id']}"),
        ("GET", f"/api/v1/sites/{site['id']}/pool"),
        ("GET", f"/api/v1/sites/{site['id']}/report"),
        ("POST", f"/api/v1/sites/{site['id']}/numbers"),
        ("GET", f"/api/v1/calls/{call_id}"),
        ("PATCH", f"/api/v1/calls/{call_id}"),
        ("GET", f"/api/v1/calls/{call_id}/recording"),
        ("POST", f"/api/v1/calls/{call_id}/exports/ga4/retry"),
        ("GET", f"/api/v1/calls?site={site['id']}"),
        ("GET", f"/api/v1/accounts/{account_a}/leads?month=2026-03"),
    ):
        body = {"count": 1} if path.endswith("/numbers") else {}
        status, answer = await api.req(method, path, token_b, json=body)
        assert (status, answer["error"]["code"]) == (404, "not_found"), (method, path)
    assert (await api.ok("GET", "/api/v1/calls", token_b))["calls"] == []
    assert (await api.ok("GET", "/api/v1/sites", token_b))["sites"] == []
    # the owner and the admin do see them
    assert (await api.ok("GET", f"/api/v1/calls/{call_id}", token_a))["id"] == call_id
    assert (await api.ok("GET", f"/api/v1/calls/{call_id}"))["id"] == call_id


def _site_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "shop", "domains": ["shop.example"], "defaults": defaults(0)}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


BAD_BODIES: list[tuple[str, str, Any, str]] = [
    ("POST", "/api/v1/accounts", {}, "name"),
    ("POST", "/api/v1/accounts", {"name": ""}, "name"),
    ("POST", "/api/v1/accounts", {"name": 5}, "name"),
    ("POST", "/api/v1/accounts", {"name": "a", "colour": "red"}, "colour"),
    ("POST", "/api/v1/accounts", {"name": "a", "timezone": "Mars/Olympus"}, "timezone"),
    ("POST", "/api/v1/accounts", {"name": "a", "max_numbers": "5"}, "max_numbers"),
    ("POST", "/api/v1/accounts", {"name": "a", "max_numbers": True}, "max_numbers"),
    ("POST", "/api/v1/accounts", {"name": "a", "retention_days": 0}, "retention_days"),
    ("POST", "/api/v1/numbers", {}, "numbers"),
    ("POST", "/api/v1/numbers", {"numbers": []}, "numbers"),
    ("POST", "/api/v1/numbers", {"numbers": "+74951110001"}, "numbers"),
    ("POST", "/api/v1/numbers", {"numbers": ["+74951110001", "84951110002"]}, "numbers[1]"),
    ("POST", "/api/v1/numbers", {"numbers": ["+7495"]}, "numbers[0]"),
    ("POST", "/api/v1/numbers", {"numbers": ["74951110001"]}, "numbers[0]"),
    ("POST", "/api/v1/numbers", {"numbers": [74951110001]}, "numbers[0]"),
    ("POST", "/api/v1/numbers", {"numbers": ["+7495111000a"]}, "numbers[0]"),
    ("POST", "/api/v1/sites", _site_body(name=None), "name"),
    ("POST", "/api/v1/sites", _site_body(domains=[]), "domains"),
    ("POST", "/api/v1/sites", _site_body(domains=["http://x/"]), "domains[0]"),
    ("POST", "/api/v1/sites", _site_body(defaults=None), "defaults"),
    ("POST", "/api/v1/sites", _site_body(defaults={"initial": "+74950000001"}), "defaults.expired"),
    (
        "POST",
        "/api/v1/sites",
        _site_body(defaults={**defaults(0), "initial": "84950000001"}),
        "defaults.initial",
    ),
    ("POST", "/api/v1/sites", _site_body(defaults={**defaults(0), "x": "+1"}), "defaults.x"),
    ("POST", "/api/v1/sites", _site_body(owner="me"), "owner"),
    ("POST", "/api/v1/sites", _site_body(settings={"hold_s": -1}), "settings.hold_s"),
    ("POST", "/api/v1/sites", _site_body(settings={"hold_s": 1.5}), "settings.hold_s"),
    (
        "POST",
        "/api/v1/sites",
        _site_body(settings={"idle_timeout_s": 0}),
        "settings.idle_timeout_s",
    ),
    ("POST", "/api/v1/sites", _site_body(settings={"lease_on": "click"}), "settings.lease_on"),
    ("POST", "/api/v1/sites", _site_body(settings={"colour": 1}), "settings.colour"),
    ("POST", "/api/v1/sites", _site_body(settings={"pool_max": 51}), "settings.pool_max"),
    (
        "POST",
        "/api/v1/sites",
        _site_body(settings={"pool_min": 5, "pool_max": 2}),
        "settings.pool_min",
    ),
    (
        "POST",
        "/api/v1/sites",
        _site_body(settings={"static": {"84957770011": "avito"}}),
        "settings.static.84957770011",
    ),
    (
        "POST",
        "/api/v1/sites",
        _site_body(settings={"analytics": {"ga4": {"measurement_id": "G-1"}}}),
        "settings.analytics.ga4.api_secret",
    ),
    (
        "POST",
        "/api/v1/sites",
        _site_body(settings={"channels": ["colour=red"]}),
        "settings.channels[0]",
    ),
    ("PATCH", "/api/v1/sites/{site}", {"settings": {"show_delay_s": "5"}}, "settings.show_delay_s"),
    ("PATCH", "/api/v1/sites/{site}", {"key": "new"}, "key"),
    ("PATCH", "/api/v1/sites/{site}", {"domains": "shop.example"}, "domains"),
    ("POST", "/api/v1/sites/{site}/numbers", {}, "count"),
    ("POST", "/api/v1/sites/{site}/numbers", {"count": 0}, "count"),
    ("POST", "/api/v1/sites/{site}/numbers", {"count": "2"}, "count"),
    ("POST", "/api/v1/sites/{site}/numbers", {"count": 1, "numbers": []}, "numbers"),
    ("POST", "/api/v1/sites/{site}/numbers", {"numbers": ["8 495 111 00 01"]}, "numbers[0]"),
    ("POST", "/api/v1/sites/{site}/numbers", {"count": 1, "extra": 1}, "extra"),
    ("PATCH", "/api/v1/calls/{call}", {"spam": "yes"}, "spam"),
    ("PATCH", "/api/v1/calls/{call}", {"note": 5}, "note"),
    ("PATCH", "/api/v1/calls/{call}", {"note": "x" * 2001}, "note"),
    ("PATCH", "/api/v1/calls/{call}", {"lead": True}, "lead"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), BAD_BODIES)
async def test_bad_bodies_name_the_field(
    api: Api, method: str, path: str, body: Any, field: str
) -> None:
    _, token = await api.account(max_numbers=50)
    site = await api.site(token, base=5000)
    call_id = await api.call(site["defaults"]["initial"], None, T0)
    use = ADMIN if path in ("/api/v1/accounts", "/api/v1/numbers") else token
    url = path.format(site=site["id"], call=call_id)
    status, answer = await api.req(method, url, use, json=body)
    assert status == 422, answer
    assert answer["error"]["code"] == "invalid"
    assert answer["error"]["field"] == field
    assert field in answer["error"]["message"]


BAD_QUERIES = [
    ("/api/v1/calls?limit=0", "limit"),
    ("/api/v1/calls?limit=501", "limit"),
    ("/api/v1/calls?limit=ten", "limit"),
    ("/api/v1/calls?since=yesterday", "since"),
    ("/api/v1/calls?since=2026-03-01T00:00:00", "since"),
    ("/api/v1/calls?until=2026-03-01", "until"),
    ("/api/v1/calls?kind=great", "kind"),
    ("/api/v1/calls?status=ok", "status"),
    ("/api/v1/calls?cursor=nonsense", "cursor"),
    ("/api/v1/calls?page=2", "page"),
    ("/api/v1/accounts/{account}/leads", "month"),
    ("/api/v1/accounts/{account}/leads?month=2026-13", "month"),
    ("/api/v1/sites/{site}/report?since=2026-03-02T00:00:00Z&until=2026-03-01T00:00:00Z", "until"),
    ("/api/v1/callers/84951234567", "e164"),
]


@pytest.mark.parametrize(("path", "field"), BAD_QUERIES)
async def test_bad_queries_name_the_field(api: Api, path: str, field: str) -> None:
    account, token = await api.account()
    site = await api.site(token)
    status, answer = await api.req(
        "DELETE" if "callers" in path else "GET",
        path.format(account=account, site=site["id"]),
        token,
    )
    assert (status, answer["error"]["field"]) == (422, field), answer


async def test_bodies_that_are_not_json_objects_are_400(api: Api) -> None:
    for data in (b"not json", b"[1, 2]", b""):
        status, answer = await api.req("POST", "/api/v1/accounts", data=data)
        assert (status, answer["error"]["code"]) == (400, "invalid")


async def test_bodies_over_64_kib_are_413(api: Api) -> None:
    big = b'{"name": "' + b"x" * (64 * 1024) + b'"}'
    status, answer = await api.req("POST", "/api/v1/accounts", data=big)
    assert (status, answer["error"]["code"]) == (413, "too_large")

    async def chunks() -> AsyncIterator[bytes]:
        yield big  # no Content-Length: the limit holds while reading

    status, answer = await api.req("POST", "/api/v1/accounts", data=chunks())
    assert status == 413


async def test_unknown_api_path_is_a_json_404(api: Api) -> None:
    status, answer = await api.req("GET", "/api/v1/nothing")
    assert (status, answer["error"]["code"]) == (404, "not_found")
    status, answer = await api.req("PUT", "/api/v1/sites")
    assert (status, answer["error"]["code"]) == (405, "method_not_allowed")


async def test_openapi_lists_exactly_the_registered_routes(api: Api, tmp_path: Path) -> None:
    status, document = await api.req("GET", "/api/v1/openapi.json", None)
    assert status == 200
    assert document["openapi"].startswith("3.1")
    described = {
        (method.upper(), path) for path, ops in document["paths"].items() for method in ops
    }
    config = Config(database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    db = Database(config.database_url)
    app = create_app(Services(config=config, db=db, bus=MemoryBus(), node_id="t"))
    registered = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/api/")
        and route.method != "HEAD"
    }
    await db.close()
    assert registered == described
    for path, ops in document["paths"].items():
        for op in ops.values():
            for name in (p["name"] for p in op["parameters"] if p["in"] == "path"):
                assert "{" + name + "}" in path

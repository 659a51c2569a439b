"""Edge inputs the operator API once answered with a 500 and a traceback (issue 11, item 6):
Unicode and 5,000-digit numbers that pass `isdigit()`, dates that overflow, deep nesting,
lone surrogates, NUL on PostgreSQL, a non-UTF-8 Authorization header. Each now gets a 4xx with
the contract's error body; the server log gets no traceback."""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

import pytest

from tests.api.conftest import ADMIN, Api

HUGE = "9" * 5000


def cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


QUERIES = [
    ("/api/v1/calls", {"limit": "²"}, "limit"),
    ("/api/v1/calls", {"limit": "٣"}, "limit"),
    ("/api/v1/calls", {"limit": HUGE}, "limit"),
    ("/api/v1/calls", {"since": "9999-12-31T23:59:59-14:00"}, "since"),
    ("/api/v1/calls", {"until": "0001-01-01T00:00:00+14:00"}, "until"),
    ("/api/v1/calls", {"cursor": cursor("9999-12-31T23:59:59-23:59|abc")}, "cursor"),
    ("/api/v1/calls", {"cursor": cursor("2026-01-01T00:00:00+00:00|a\x00b")}, "cursor"),
    ("/api/v1/calls", {"cursor": base64.urlsafe_b64encode(b"\xff\xfe").decode()}, "cursor"),
    ("/api/v1/calls", {"site": "a\x00b"}, "site"),
    ("/api/v1/calls?limit=%C2%B2", {}, "limit"),
]


@pytest.mark.parametrize("query", ["site=%ED%A0%80", "site=%FF%FE", "cursor=%ED%A0%80"])
async def test_query_bytes_that_are_not_utf8_are_4xx(api: Api, query: str) -> None:
    # The server decodes them to U+FFFD: no such site, no such cursor.
    status, answer = await api.req("GET", f"{api.base}/api/v1/calls?{query}")
    assert status in (404, 422) and answer["error"]["code"] in ("not_found", "invalid")


@pytest.mark.parametrize(("path", "query", "field"), QUERIES)
async def test_edge_query_values_are_422_naming_them(
    api: Api, path: str, query: dict[str, str], field: str
) -> None:
    status, answer = await api.req("GET", api.base + path, params=query)
    assert (status, answer["error"].get("field")) == (422, field), answer


@pytest.mark.parametrize("month", ["0000-01", "٢٠٢٦-01", "2026-13", "2026-01\n", HUGE])
async def test_edge_months_are_422(api: Api, month: str) -> None:
    account, _ = await api.account()
    status, answer = await api.req(
        "GET", f"/api/v1/accounts/{account}/leads", params={"month": month}
    )
    assert (status, answer["error"]["field"]) == (422, "month")


@pytest.mark.parametrize(
    ("since", "until"),
    [("0001-01-01T00:00:00+00:00", None), (None, "9999-12-31T23:59:59-14:00")],
)
async def test_report_windows_that_overflow_are_422(
    api: Api, since: str | None, until: str | None
) -> None:
    _, token = await api.account()
    site = await api.site(token)
    query = {k: v for k, v in (("since", since), ("until", until)) if v is not None}
    status, _ = await api.req("GET", f"/api/v1/sites/{site['id']}/report", token, params=query)
    assert status == 422


@pytest.mark.parametrize(
    "exp", ["²", HUGE, "١٢٣", "-1", "1e9", "99999999999999999999"], ids=lambda e: e[:8]
)
async def test_signed_urls_with_odd_expiries_are_403(api: Api, exp: str) -> None:
    status, answer = await api.req(
        "GET", "/api/v1/calls/x/recording", None, params={"exp": exp, "sig": "0" * 64}
    )
    expected = (422, "invalid") if exp == HUGE else (403, "forbidden")  # 422: over 2,000 chars
    assert (status, answer["error"]["code"]) == expected
    status, answer = await api.req(
        "GET", "/api/v1/calls/x/recording", None, params={"exp": "1", "sig": "\udcff" * 64}
    )
    assert status == 403


BODIES = [
    b"[" * 30_000 + b"]" * 30_000,
    b'{"name": ' + b'{"a": ' * 5_000 + b"1" + b"}" * 5_001,
    b'{"name": "\\ud800", "domains": ["a.example"], "defaults": {}}',
    b'{"name": "a\\u0000b", "domains": ["a.example"], "defaults": {}}',
    b'{"name": "a", "settings": {"cooldown_days": Infinity}}',
    b'{"name": "a", "settings": {"cooldown_days": NaN}}',
    b'{"name": "a", "x": ' + HUGE.encode() + b"}",
]


@pytest.mark.parametrize("body", BODIES, ids=lambda b: b[:24].decode(errors="replace"))
async def test_bodies_that_cannot_be_stored_or_parsed_are_400(
    api: Api, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    for path in ("/api/v1/sites", "/api/v1/accounts"):
        status, answer = await api.req(
            "POST", path, ADMIN, data=body, headers={"Content-Type": "application/json"}
        )
        assert (status, answer["error"]["code"]) == (400, "invalid"), path
    assert not [r for r in caplog.records if r.exc_info]


async def test_nul_characters_are_refused_before_postgresql_sees_them(pg_api: Api) -> None:
    _, token = await pg_api.account()
    site = await pg_api.site(token)
    status, answer = await pg_api.req(
        "PATCH",
        f"/api/v1/sites/{site['id']}",
        token,
        data=b'{"name": "shop\\u0000"}',
        headers={"Content-Type": "application/json"},
    )
    assert status == 400
    for path in ("/api/v1/sites/a%00b", "/api/v1/calls/%00", "/api/v1/tokens/ct_%00%00%00%00%00"):
        status, answer = await pg_api.req("GET" if "tokens" not in path else "DELETE", path, token)
        assert (status, answer["error"]["code"]) == (422, "invalid"), path
    status, _ = await pg_api.req("GET", "/api/v1/calls", token, params={"site": "\x00"})
    assert status == 422


async def raw_request(api: Api, head: bytes) -> tuple[int, bytes]:
    host, port = api.base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    status = int(answer.split(b" ", 2)[1])
    return status, answer.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize("token", [b"\xff\xfe\xfd", b"ct_\xc3\x28abc", "ключ".encode()])
async def test_a_non_ascii_authorization_header_is_401(
    api: Api, token: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    head = (
        b"GET /api/v1/sites HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + token
        + b"\r\nConnection: close\r\n\r\n"
    )
    status, body = await raw_request(api, head)
    assert status == 401 and b'"unauthorized"' in body
    assert not [r for r in caplog.records if r.exc_info]


async def test_a_newline_in_a_failing_path_cannot_forge_a_log_line(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(*_: Any) -> None:
        raise RuntimeError("boom")

    api.services.clock = explode  # type: ignore[assignment]
    caplog.set_level(logging.ERROR, logger="web.api.errors")
    forged = "/api/v1/calls/x%0AINFO%20web.api%20forged/recording"
    status, answer = await api.req(
        "GET", api.base + forged, None, params={"exp": "1", "sig": "0" * 64}
    )
    assert status == 500 and answer["error"]["code"] == "internal"
    logged = [r.getMessage() for r in caplog.records if r.name == "web.api.errors"]
    assert logged and all("\n" not in line for line in logged)

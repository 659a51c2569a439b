"""The dashboard's session cookie over real HTTP: what sign-in sets, CSRF on every
state-changing request made with the cookie, sign-out ending the session server-side, and
Bearer clients untouched."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from calltracking.config import Config
from calltracking.serve import running
from calltracking.store import schema as t
from calltracking.store.dashboard_sessions import SESSION_TTL
from tests.api.conftest import ADMIN, Api, numbers

SESSION = "/api/v1/session"


def session_cookie(response: aiohttp.ClientResponse) -> Any:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.getall("Set-Cookie", []):
        jar.load(header)
    return jar["ct_session"]


async def sign_in(
    api: Api, token: str = ADMIN, headers: dict[str, str] | None = None
) -> tuple[int, Any, Any]:
    async with api.session.post(api.base + SESSION, json={"token": token}, headers=headers) as r:
        body = await r.json()
        return r.status, body, session_cookie(r) if r.status == 201 else None


def with_cookie(secret: str, csrf: str | None = None) -> dict[str, str]:
    headers = {"Cookie": f"ct_session={secret}"}
    if csrf is not None:
        headers["X-CSRF-Token"] = csrf
    return headers


async def test_sign_in_sets_an_httponly_strict_cookie_and_answers_the_csrf_token(
    api: Api,
) -> None:
    status, body, cookie = await sign_in(api)
    assert status == 201
    assert (body["admin"], body["account_id"]) == (True, None)
    assert len(body["csrf"]) == 64
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/"
    assert cookie["secure"] == ""  # plain http on loopback: a Secure cookie would be dropped
    assert int(cookie["max-age"]) == int(SESSION_TTL.total_seconds())
    assert body["csrf"] not in cookie.value and cookie.value not in body["csrf"]


async def test_the_cookie_reads_like_its_token_and_a_new_tab_gets_the_csrf_token(
    api: Api,
) -> None:
    account, token = await api.account()
    _, signed, cookie = await sign_in(api, token)
    status, sites = await api.req("GET", "/api/v1/sites", None, headers=with_cookie(cookie.value))
    assert (status, sites) == (200, {"sites": []})
    status, me = await api.req("GET", SESSION, None, headers=with_cookie(cookie.value))
    assert status == 200
    assert (me["admin"], me["account_id"], me["csrf"]) == (False, account, signed["csrf"])
    status, _ = await api.req("GET", "/api/v1/accounts", None, headers=with_cookie(cookie.value))
    assert status == 403  # still the account's rights, not more


@pytest.mark.parametrize("csrf", [None, "", "0" * 64, "wrong"])
async def test_a_cookie_post_without_the_right_csrf_header_is_refused(
    api: Api, csrf: str | None
) -> None:
    _, _, cookie = await sign_in(api)
    status, body = await api.req(
        "POST", "/api/v1/numbers", None, json={"numbers": numbers(1)},
        headers=with_cookie(cookie.value, csrf),
    )  # fmt: skip
    assert (status, body["error"]["code"]) == (403, "csrf")
    assert (await api.ok("GET", "/api/v1/numbers"))["numbers"] == []  # nothing changed


async def test_a_cookie_post_with_the_csrf_header_goes_through(api: Api) -> None:
    _, body, cookie = await sign_in(api)
    status, added = await api.req(
        "POST", "/api/v1/numbers", None, json={"numbers": numbers(2)},
        headers=with_cookie(cookie.value, body["csrf"]),
    )  # fmt: skip
    assert (status, added) == (200, {"added": 2, "already_present": 0})


async def test_bearer_clients_need_no_csrf_header_and_ignore_the_cookie(api: Api) -> None:
    _, token = await api.account()
    _, _, cookie = await sign_in(api)  # an admin session cookie in the same client
    headers = with_cookie(cookie.value)
    status, _ = await api.req("POST", "/api/v1/numbers", ADMIN, json={"numbers": numbers(1)})
    assert status == 200
    status, _ = await api.req("GET", "/api/v1/accounts", token, headers=headers)
    assert status == 403  # the Bearer token speaks, not the admin cookie


async def test_sign_out_ends_the_session_server_side(api: Api) -> None:
    _, body, cookie = await sign_in(api)
    headers = with_cookie(cookie.value, body["csrf"])
    status, _ = await api.req("DELETE", SESSION, None, headers=with_cookie(cookie.value))
    assert status == 403  # signing out is a change too: CSRF
    async with api.session.delete(api.base + SESSION, headers=headers) as response:
        assert response.status == 204
        cleared = session_cookie(response)
        assert (cleared.value, cleared["max-age"]) == ("", "0")
    async with api.services.db.read() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(t.dashboard_sessions)) == 0
    status, answer = await api.req("GET", "/api/v1/sites", None, headers=headers)  # a copy
    assert (status, answer["error"]["code"]) == (401, "unauthorized")


async def test_an_expired_session_or_an_unknown_cookie_is_401(api: Api) -> None:
    _, _, cookie = await sign_in(api)
    async with api.services.db.write() as conn:
        await conn.execute(
            t.dashboard_sessions.update().values(
                expires_at=api.services.clock() - timedelta(seconds=1)
            )
        )
    for secret in (cookie.value, "forged-secret"):
        status, _ = await api.req("GET", "/api/v1/sites", None, headers=with_cookie(secret))
        assert status == 401


async def test_a_session_ends_with_its_token(api: Api) -> None:
    _, token = await api.account()
    _, _, cookie = await sign_in(api, token)
    async with api.services.db.write() as conn:
        await conn.execute(t.tokens.delete())
    status, _ = await api.req("GET", "/api/v1/sites", None, headers=with_cookie(cookie.value))
    assert status == 401


@pytest.mark.parametrize(
    ("body", "status"),
    [({"token": "not-a-token"}, 401), ({"token": ""}, 422), ({"token": 5}, 422), ({}, 422)],
)
async def test_a_bad_sign_in_sets_no_cookie(api: Api, body: dict[str, Any], status: int) -> None:
    async with api.session.post(api.base + SESSION, json=body) as response:
        assert response.status == status
        assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}],
)
async def test_a_sign_in_from_another_site_is_refused(api: Api, headers: dict[str, str]) -> None:
    status, body, _ = await sign_in(api, headers=headers)
    assert (status, body["error"]["code"]) == (403, "forbidden")


async def test_a_sign_in_from_our_own_origin_is_accepted(api: Api) -> None:
    status, _, _ = await sign_in(api, headers={"Origin": api.base})
    assert status == 201


@pytest.fixture
async def behind_proxy(tmp_path: Path) -> AsyncIterator[Api]:
    config = Config(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'api.db'}",
        http_port=0,
        admin_token=ADMIN,
        recordings_dir=tmp_path,
        trusted_proxies=("127.0.0.1",),
    )
    async with running(config, ["web"]) as state, aiohttp.ClientSession() as session:
        yield Api(session, f"http://127.0.0.1:{state.http_port}", state.services, tmp_path)


async def test_the_cookie_is_secure_when_a_trusted_proxy_says_https(behind_proxy: Api) -> None:
    status, _, cookie = await sign_in(behind_proxy, headers={"X-Forwarded-Proto": "https"})
    assert (status, cookie["secure"]) == (201, True)
    status, _, cookie = await sign_in(behind_proxy)
    assert (status, cookie["secure"]) == (201, "")

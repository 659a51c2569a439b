"""What the operator API does for operations: a database outage is 503 `unavailable` with one
log line, not a 500 and a traceback per request or per relay round; the access log masks
callers' numbers and signed-URL signatures; masked secrets PATCHed back keep the real ones."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from calltracking.store.db import Database
from calltracking.store.sites import get_site
from tests.api.conftest import Api, serving
from tests.support.tcpproxy import TcpProxy
from web import access_log
from web.access_log import RedactingAccessLogger

CALLER = "+79161234567"


@pytest.fixture
async def proxied_api(tmp_path: Path, pg_url: str) -> AsyncIterator[tuple[Api, TcpProxy]]:
    db = Database(pg_url)
    async with db.engine.begin() as conn:
        await conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        await conn.execute(sa.text("CREATE SCHEMA public"))
    await db.close()
    url = sa.make_url(pg_url)
    proxy = await TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    try:
        async with serving(tmp_path, database_url=str(url.set(port=proxy.port))) as api:
            yield api, proxy
    finally:
        await proxy.stop()


async def test_a_database_outage_is_503_with_one_log_line(
    proxied_api: tuple[Api, TcpProxy], caplog: pytest.LogCaptureFixture
) -> None:
    api, proxy = proxied_api
    _, token = await api.account()
    caplog.clear()
    proxy.cut()
    for _ in range(20):
        status, answer = await api.req("GET", "/api/v1/sites", token)
        assert (status, answer["error"]["code"]) == (503, "unavailable")
    warnings = [r for r in caplog.records if r.name == "web.api.errors"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert not [r for r in caplog.records if r.exc_info], "no traceback during an outage"
    proxy.restore()
    for _ in range(50):
        status, _ = await api.req("GET", "/api/v1/sites", token)
        if status == 200:
            break
    assert status == 200


async def test_the_access_log_masks_callers_and_signatures(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    _, token = await api.account()
    await api.ok("DELETE", f"/api/v1/callers/{CALLER}", token)
    await api.ok("DELETE", f"/api/v1/callers/%2B{CALLER[1:]}", token)
    signature = "ab" * 32
    await api.req("GET", "/api/v1/calls/x/recording", None, params={"exp": "99", "sig": signature})
    await api.ok("DELETE", f"/api/v1/tokens/{token}", token)
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"][1:]
    assert len(lines) == 4  # after the account's creation
    text = "\n".join(lines)
    assert CALLER not in text and CALLER[1:] not in text and signature not in text
    assert token not in text and f"/api/v1/tokens/{token[:12]}..." in lines[3]
    assert "/api/v1/callers/+791" in lines[0] and "<redacted>" in lines[2]


async def test_masked_secrets_sent_back_keep_the_stored_ones(api: Api) -> None:
    _, token = await api.account()
    analytics = {
        "ga4": {"measurement_id": "G-1", "api_secret": "ga-secret-1234"},
        "metrika": {"counter_id": "42", "token": "oauth-token-5678"},
        "webhooks": [
            {"url": "https://hooks.example/a", "events": ["call.ended"], "secret": "hook-9abc"}
        ],
    }
    site = await api.site(token, analytics=analytics)
    shown = await api.ok("GET", f"/api/v1/sites/{site['id']}", token)
    assert shown["settings"]["analytics"]["ga4"]["api_secret"] == "****1234"
    await api.ok(
        "PATCH", f"/api/v1/sites/{site['id']}", token, json={"settings": shown["settings"]}
    )
    async with api.services.db.read() as conn:
        stored = await get_site(conn, site["id"])
    assert stored is not None
    kept = stored.settings.analytics
    assert kept.ga4 is not None and kept.ga4.api_secret == "ga-secret-1234"
    assert kept.metrika is not None and kept.metrika.token == "oauth-token-5678"
    assert kept.webhooks[0].secret == "hook-9abc"
    wrong = {"analytics": {"ga4": {"measurement_id": "G-1", "api_secret": "****0000"}}}
    status, answer = await api.req(
        "PATCH", f"/api/v1/sites/{site['id']}", token, json={"settings": wrong}
    )
    assert (status, answer["error"]["field"]) == (422, "settings.analytics.ga4.api_secret")


def test_a_line_below_the_access_loggers_level_is_not_even_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logger = logging.getLogger("test.access.quiet")
    logger.setLevel(logging.INFO)

    def redacted(path_qs: str) -> str:
        raise AssertionError(f"{path_qs} was redacted for a line nobody logs")

    monkeypatch.setattr(access_log, "redact", redacted)
    request = make_mocked_request("GET", "/ws?site=k", headers={"User-Agent": "ua"})
    RedactingAccessLogger(logger, "").log(request, web.Response(status=101), 12.5)
    with pytest.raises(AssertionError, match="redacted"):  # an INFO line is built
        RedactingAccessLogger(logger, "").log(request, web.Response(status=200), 0.01)


def test_websocket_upgrades_are_access_logged_at_debug_level_only() -> None:
    logger = logging.getLogger("test.access")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        access = RedactingAccessLogger(logger, "")
        request = make_mocked_request("GET", "/ws?site=k", headers={"User-Agent": "ua"})
        access.log(request, web.Response(status=101), 12.5)
        access.log(request, web.Response(status=200), 0.01)
    finally:
        logger.removeHandler(handler)
    assert [(r.levelno, r.getMessage().split('"')[1]) for r in records] == [
        (logging.DEBUG, "GET '/ws?site=k'"),
        (logging.INFO, "GET '/ws?site=k'"),
    ]

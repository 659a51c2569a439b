"""What a held visitor socket lets go of (web/shed.py), and that it still works without it."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from tests.web.harness import hello, make_site, open_tab, session, tracker, web_config
from web.shed import shed_after_hello, shed_after_upgrade


def test_after_the_hello_only_the_user_agent_stays_among_the_request_headers() -> None:
    request = make_mocked_request(
        "GET",
        "/ws",
        headers={"User-Agent": "ua", "Origin": "https://shop.example", "Cookie": "a=b"},
    )
    shed_after_hello(request)
    assert dict(request.headers) == {"User-Agent": "ua"}


async def test_a_socket_without_its_http_parser_and_sent_headers_still_carries_frames() -> None:
    seen: dict[str, object] = {}

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        shed_after_upgrade(request, ws)
        seen["parser"] = request.protocol._parser
        seen["headers"] = len(ws.headers)
        async for msg in ws:
            await ws.send_str(msg.data.upper())
        return ws

    app = web.Application()
    app.router.add_get("/ws", echo)
    async with TestClient(TestServer(app)) as client:
        ws = await client.ws_connect("/ws")
        for word in ("one", "two"):
            await ws.send_str(word)
            assert (await ws.receive(timeout=5)).data == word.upper()
        await ws.close()
    assert seen == {"parser": None, "headers": 0}


async def test_a_closed_visitor_socket_is_access_logged_with_its_user_agent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp.access")
    async with tracker(web_config(tmp_path)) as state, session() as http:
        site = await make_site(state, reserve=1)
        tab = await open_tab(http, state, user_agent="Shed-Test/1.0 (X11)")
        await hello(tab, site)
        assert (await tab.number())["kind"]
        await tab.ws.close()
        for _ in range(100):  # the server logs once its side of the close is done
            if _access_lines(caplog):
                break
            await asyncio.sleep(0.05)
    lines = _access_lines(caplog)
    assert len(lines) == 1 and lines[0].endswith("'Shed-Test/1.0 (X11)'")


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "\"GET '/ws'\" 101" in r.getMessage()]

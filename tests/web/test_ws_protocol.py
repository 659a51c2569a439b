"""What a client may send, and what it gets for everything else: every close code, malformed and
oversized frames, a flood from one address; none of it touches another visitor."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import web.frames
import web.ws
from calltracking.serve import Running
from tests.web.harness import hello, make_site, open_tab, session, tracker, web_config


async def test_unknown_site_closes_4404(tmp_path: Path) -> None:
    async with tracker(web_config(tmp_path)) as state, session() as http:
        await make_site(state)
        tab = await open_tab(http, state)
        await tab.send(
            {
                "type": "hello",
                "site": "no-such-site",
                "visitor": None,
                "tab": "t",
                "url": "https://shop.example/",
                "referrer": "",
            }
        )
        assert (await tab.next())["type"] == "error"
        assert await tab.closed_with() == 4404


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "https://shop.example.evil.com", "null", ""]
)
async def test_foreign_origin_closes_4403(tmp_path: Path, origin: str) -> None:
    async with tracker(web_config(tmp_path)) as state, session() as http:
        site = await make_site(state)
        tab = await open_tab(http, state, origin=origin)
        await tab.send(
            {"type": "hello", "site": site.key, "url": "https://shop.example/", "referrer": ""}
        )
        assert (await tab.next())["code"] == "4403"
        assert await tab.closed_with() == 4403


async def test_subdomains_of_the_site_are_allowed(tmp_path: Path) -> None:
    async with tracker(web_config(tmp_path)) as state, session() as http:
        site = await make_site(state)
        tab = await open_tab(http, state, origin="https://m.shop.example")
        await hello(tab, site)
        assert (await tab.number())["type"] == "number"


async def test_no_hello_in_time_closes_4408(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web.ws, "HELLO_TIMEOUT_S", 0.3)
    async with tracker(web_config(tmp_path)) as state, session() as http:
        tab = await open_tab(http, state)
        assert (await tab.next())["code"] == "4408"
        assert await tab.closed_with() == 4408


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        "[1, 2]",
        json.dumps({"type": 5}),
        json.dumps({"no": "type"}),
        json.dumps({"type": "hello"}),
        json.dumps({"type": "hello", "site": 12}),
        json.dumps({"type": "activity"}),
    ],
)
async def test_a_malformed_first_frame_closes_4400(tmp_path: Path, payload: str) -> None:
    async with tracker(web_config(tmp_path)) as state, session() as http:
        await make_site(state)
        tab = await open_tab(http, state)
        await tab.ws.send_str(payload)
        error = await tab.next()
        assert error["type"] == "error" and error["code"] == "4400"
        assert await tab.closed_with() == 4400


@pytest.mark.parametrize(
    "payload",
    [
        "{bad",
        json.dumps({"type": "hello", "site": "x"}),
        json.dumps({"type": "visibility", "state": "sideways"}),
        b"\x00binary",
    ],
)
async def test_malformed_frames_after_hello_close_4400_and_spare_other_visitors(
    tmp_path: Path, payload: str | bytes
) -> None:
    async with tracker(web_config(tmp_path)) as state, session() as http:
        site = await make_site(state, reserve=3)
        bystander = await open_tab(http, state)
        await hello(bystander, site)
        number = (await bystander.until_kind("dynamic"))["e164"]
        tab = await open_tab(http, state)
        await hello(tab, site)
        await tab.number()
        if isinstance(payload, bytes):
            await tab.ws.send_bytes(payload)
        else:
            await tab.ws.send_str(payload)
        assert (await tab.next())["code"] == "4400"
        assert await tab.closed_with() == 4400
        await bystander.send({"type": "activity"})
        await asyncio.sleep(0.2)
        assert [f for f in bystander.frames if f["type"] == "number"][-1]["e164"] == number
        assert not bystander.ws.closed


async def test_unknown_frame_types_are_ignored(tmp_path: Path) -> None:
    async with tracker(web_config(tmp_path)) as state, session() as http:
        site = await make_site(state, reserve=2)
        tab = await open_tab(http, state)
        await hello(tab, site)
        await tab.until_kind("dynamic")
        await tab.send({"type": "future-thing", "x": 1})
        await tab.send({"type": "activity"})
        await asyncio.sleep(0.2)
        assert not tab.ws.closed


async def test_frames_over_4_kib_are_refused(tmp_path: Path) -> None:
    async with tracker(web_config(tmp_path)) as state, session() as http:
        site = await make_site(state, reserve=2)
        tab = await open_tab(http, state)
        await hello(tab, site)
        await tab.number()
        await tab.send({"type": "activity", "padding": "x" * 5000})
        assert await tab.closed_with() in (1009, 4400)


async def test_a_flood_from_one_address_is_refused_4429(tmp_path: Path) -> None:
    async with tracker(web_config(tmp_path, ws_max_per_address=3)) as state, session() as http:
        site = await make_site(state, reserve=5)
        tabs = [await open_tab(http, state) for _ in range(3)]
        for tab in tabs:
            await hello(tab, site)
        extra = await open_tab(http, state)
        assert await extra.closed_with() == 4429
        await tabs[0].ws.close()
        # The server frees the address once it has recorded the tab's close; poll for it.
        async with asyncio.timeout(10):
            while True:
                again = await open_tab(http, state)
                try:
                    await hello(again, site)
                    break
                except AssertionError:
                    await asyncio.sleep(0.1)


async def test_forwarded_address_counts_only_behind_a_trusted_proxy(tmp_path: Path) -> None:
    config = web_config(tmp_path, ws_max_per_address=1, trusted_proxies=("127.0.0.1",))
    async with tracker(config) as state, session() as http:
        site = await make_site(state, reserve=5)
        first = await open_tab(http, state, headers={"X-Forwarded-For": "203.0.113.5"})
        await hello(first, site)
        second = await open_tab(http, state, headers={"X-Forwarded-For": "203.0.113.6"})
        await hello(second, site)
        third = await open_tab(http, state, headers={"X-Forwarded-For": "203.0.113.5"})
        assert await third.closed_with() == 4429


async def test_forged_visitor_id_gets_a_new_visitor(tmp_path: Path) -> None:
    async with tracker(web_config(tmp_path)) as state, session() as http:
        site = await make_site(state, reserve=2)
        tab = await open_tab(http, state)
        welcome = await hello(tab, site, visitor="forged-0000")
        assert welcome["visitor"] != "forged-0000"
        assert len(welcome["visitor"]) >= 32


async def test_healthz_and_metrics_answer(tmp_path: Path) -> None:
    async with tracker(web_config(tmp_path)) as state, session() as http:
        base = f"http://127.0.0.1:{state.http_port}"
        async with http.get(f"{base}/healthz") as response:
            body = await response.json()
            assert response.status == 200 and body["parts"]["database"] is True
        async with http.get(f"{base}/metrics") as response:
            assert "calltracking_ws_tabs 0" in await response.text()
        async with http.get(f"{base}/snippet.js") as response:
            assert response.status in (200, 404)
            if response.status == 200:
                assert "max-age" in response.headers["Cache-Control"]


_ = aiohttp


async def test_a_frame_flood_closes_4400_without_touching_other_tabs(tmp_path: Path) -> None:
    async with tracker(web_config(tmp_path)) as state, session() as http:
        site = await make_site(state, reserve=3)
        bystander = await open_tab(http, state)
        await hello(bystander, site)
        await bystander.until_kind("dynamic")
        flood = await open_tab(http, state)
        await hello(flood, site)
        await flood.number()
        for _ in range(100):
            await flood.send({"type": "visibility", "state": "visible"})
        error = await flood.next()
        assert (error["type"], error["code"]) == ("error", "4400")
        assert "frames" in error["message"]
        assert await flood.closed_with() == 4400
        assert not bystander.ws.closed


# --- the hello deadline, nesting and text no store takes ---------------------------------------


async def test_pings_do_not_extend_the_hello_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web.ws, "HELLO_TIMEOUT_S", 0.5)
    async with tracker(web_config(tmp_path)) as state, session() as http:
        tab = await open_tab(http, state)

        async def keep_pinging() -> None:
            while not tab.ws.closed:
                await tab.ws.ping()
                await asyncio.sleep(0.1)  # the client's pace: well inside each deadline

        pinging = asyncio.create_task(keep_pinging())
        try:
            assert (await tab.next())["code"] == "4408"
            assert await tab.closed_with() == 4408
        finally:
            pinging.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await pinging


DEEP = '{"type": "hello", "site": "s", "x": ' + "[" * 1500 + "]" * 1500 + "}"


@pytest.mark.parametrize(
    "payload",
    [
        DEEP,
        '{"type": "hello", "site": "\\ud800"}',
        '{"type": "hello", "site": "shop", "url": "https://shop.example/\\udfff"}',
        '{"type": "hello", "site": "shop\\u0000"}',
        '{"type": "hello", "site": "shop", "visitor": "v\\u0000"}',
    ],
    ids=["nested-1500", "surrogate-site", "surrogate-url", "nul-site", "nul-visitor"],
)
async def test_deep_nesting_nul_and_lone_surrogates_close_4400_not_1011(
    tmp_path: Path, payload: str
) -> None:
    async with tracker(web_config(tmp_path)) as state, session() as http:
        await make_site(state)
        tab = await open_tab(http, state)
        await tab.ws.send_str(payload)
        error = await tab.next()
        assert error["type"] == "error" and error["code"] == "4400"
        assert await tab.closed_with() == 4400


async def test_a_deeply_nested_frame_after_hello_closes_4400(tmp_path: Path) -> None:
    async with tracker(web_config(tmp_path)) as state, session() as http:
        site = await make_site(state, reserve=2)
        tab = await open_tab(http, state)
        await hello(tab, site)
        await tab.number()
        await tab.ws.send_str('{"type": "future", "x": ' + "[" * 1500 + "]" * 1500 + "}")
        assert (await tab.next())["code"] == "4400"
        assert await tab.closed_with() == 4400


# --- property: any frame gets a close code or is ignored, never 1011 or a traceback ----------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=40)
    | st.sampled_from(["\ud800", "\x00", "\udfff\ud800", "hello", "shop.example"])
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_frames = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["hello", "activity", "visibility", "want", "x"]) | _values,
        "site": _values,
        "state": st.sampled_from(["hidden", "visible"]) | _values,
        "visitor": _values,
        "url": _values,
        "ga_cookies": _values,
        "automation": _values,
    },
).map(json.dumps)
_payloads = (
    _frames
    | st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=300)
    | st.integers(1, 2500).map(lambda n: "[" * n + "]" * n)
    | st.binary(max_size=64)
)
ALLOWED_CLOSES = {1000, 1007, 1009, 4400, 4403, 4404}


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def _exercise(state: Running, site_key: str, payloads: list[str | bytes], greet: bool) -> int:
    async with session() as http:
        tab = await open_tab(http, state)
        if greet:
            await tab.send({"type": "hello", "site": site_key, "url": "https://shop.example/"})
        for payload in payloads:
            if tab.ws.closed:
                break
            if isinstance(payload, bytes):
                await tab.ws.send_bytes(payload)
            else:
                await tab.ws.send_str(payload)
        await tab.ws.close()
        code = tab.ws.close_code
        assert code is not None
        return code


def test_any_frame_gets_a_close_code_or_is_ignored_never_1011(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    stack = contextlib.AsyncExitStack()
    errors = _Errors()
    logging.getLogger("web").addHandler(errors)
    try:
        state = loop.run_until_complete(stack.enter_async_context(tracker(web_config(tmp_path))))
        site = loop.run_until_complete(make_site(state, reserve=5))

        @settings(max_examples=40, deadline=None)
        @given(st.lists(_payloads, min_size=1, max_size=4), st.booleans())
        def check(payloads: list[str | bytes], greet: bool) -> None:
            code = loop.run_until_complete(_exercise(state, site.key, payloads, greet))
            assert code in ALLOWED_CLOSES
            assert errors.lines == []

        check()
    finally:
        logging.getLogger("web").removeHandler(errors)
        loop.run_until_complete(stack.aclose())
        loop.close()


@given(st.text(max_size=300) | _frames)
def test_parse_frame_and_hello_give_a_frame_or_malformed(data: str) -> None:
    try:
        frame = web.frames.parse_frame(data)
    except web.frames.Malformed:
        return
    assert isinstance(frame["type"], str)
    try:
        site, hello_ = web.frames.parse_hello(frame, "Mozilla/5.0")
    except web.frames.Malformed:
        return
    texts = [site, hello_.url, hello_.referrer, hello_.visitor_id or "", hello_.ga or ""]
    for text in texts:
        assert "\x00" not in text
        text.encode("utf-8")  # no lone surrogates reach a store


@given(
    st.text(max_size=300)
    | _frames
    | st.integers(1, 12).map(lambda n: '{"type": "x", "a": ' + "[" * n + "]" * n + "}")
    | st.sampled_from(['{"type": "x", "a": "\\u0000"}', '{"type": "x", "a": "\\udc00"}'])
)
def test_frames_that_skip_the_value_walk_would_pass_it(data: str) -> None:
    """parse_frame skips `_check_values` when the text shows it cannot fail: it never does."""
    try:
        frame = web.frames.parse_frame(data)
    except web.frames.Malformed:
        return
    if web.frames._plainly_fine(data):
        web.frames._check_values(frame)  # raises Malformed if the shortcut let one through

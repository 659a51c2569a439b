"""FastAGI held off strangers and garbage: the allow-list closes other peers at once (one log line
for a flood of them), and any bytes in the header block end in a clean refusal, never a
traceback or a hang. Peers are real sockets from distinct loopback addresses."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agi import AgiServer
from agi.channel import read_env
from agi.protocol import AgiError
from calltracking.config import Config
from calltracking.core.netpolicy import parse_networks
from calltracking.serve import running
from tests.agi.test_agi_server import BASE, PBX, MemoryRecorder

PBX_ADDRESS = "127.0.0.2"
STRANGER = "127.0.0.3"


@contextlib.asynccontextmanager
async def agi_server(allow: str, recorder: MemoryRecorder) -> AsyncIterator[AgiServer]:
    server = AgiServer(recorder, PBX, "7", "127.0.0.1", 0, allow=parse_networks(allow))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def _session(port: int, source: str, block: bytes) -> bytes:
    """Send a header block from `source`; the first line the server answers (b"" if none)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        writer.write(block)
        await writer.drain()
        return await reader.readline()
    except ConnectionError:
        return b""
    finally:
        writer.close()


async def test_a_peer_outside_the_allow_list_is_closed_before_any_command(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="agi.server")
    recorder = MemoryRecorder()
    async with agi_server(f"{PBX_ADDRESS}, 10.0.0.0/8", recorder) as server:
        answers = [await _session(server.port, STRANGER, BASE.env_block) for _ in range(50)]
        assert server.counters()["refused"] == 50
        from_pbx = await _session(server.port, PBX_ADDRESS, BASE.env_block)
    assert answers == [b""] * 50
    assert recorder.calls == []  # no call or lead from a stranger
    assert from_pbx.startswith(b"GET FULL VARIABLE")  # the allowed PBX gets its dialogue
    lines = [r.getMessage() for r in caplog.records if "CALLTRACKING_AGI_ALLOW" in r.getMessage()]
    assert len(lines) == 1  # one line for the flood
    assert STRANGER in lines[0]


async def test_serve_applies_the_allow_list_from_the_settings(tmp_path: Path) -> None:
    config = Config(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'agi.db'}",
        agi_port=0,
        agi_allow=PBX_ADDRESS,
    )
    async with running(config, ["agi"]) as state:
        assert state.agi_port is not None
        assert await _session(state.agi_port, STRANGER, BASE.env_block) == b""
        counters = state.services.health.counters["agi_dialogues_total"]()
        assert counters["refused"] == 1


# --- property: any header block gets a clean refusal or an environment ------------------------

_lines = st.one_of(
    st.binary(max_size=80),
    st.from_regex(rb"\Aagi_[a-z_]{1,12}: [ -~]{0,30}\Z"),
    st.sampled_from([b"agi_network_script: calltracking", b"\r", b"agi_", b": x", b"\xff\xfe"]),
)
_blocks = st.lists(_lines, max_size=12).map(b"\n".join) | st.binary(max_size=400)


@settings(max_examples=200, deadline=None)
@given(_blocks, st.booleans())
def test_the_header_reader_gives_an_env_or_an_agi_error_for_any_bytes(
    block: bytes, terminated: bool
) -> None:
    async def read() -> dict[str, str] | AgiError:
        reader = asyncio.StreamReader(limit=1024)
        reader.feed_data(block + (b"\n\n" if terminated else b""))
        reader.feed_eof()
        try:
            async with asyncio.timeout(5):  # a hang is a failure, not a stuck test
                return await read_env(reader)
        except AgiError as exc:
            return exc

    result = asyncio.run(read())
    if isinstance(result, dict):
        assert all(name.startswith("agi_") for name in result)


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def _garbage_session(port: int, data: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(10):  # the server's budget is 0.5 s: it must close first
            while await reader.readline():
                writer.write(b"200 result=1\n")  # answer whatever it asks, like a dumb PBX
    except ConnectionError:
        pass
    finally:
        writer.close()


def test_the_server_ends_every_garbage_session_cleanly() -> None:
    loop = asyncio.new_event_loop()
    errors = _Errors()
    logging.getLogger("agi").addHandler(errors)
    server = AgiServer(MemoryRecorder(), PBX, "7", "127.0.0.1", 0)
    try:
        loop.run_until_complete(server.start())

        @settings(max_examples=60, deadline=None)
        @given(_blocks.map(lambda b: b + b"\n\n") | _blocks)
        def check(data: bytes) -> None:
            before = sum(server.counters().values())
            loop.run_until_complete(_garbage_session(server.port, data))
            # Counted before the close, so the count is there once the socket closed.
            assert sum(server.counters().values()) == before + 1
            assert errors.lines == []
            assert server.counters()["error"] == 0

        check()
    finally:
        logging.getLogger("agi").removeHandler(errors)
        loop.run_until_complete(server.stop())
        loop.close()

import asyncio
import contextlib
import gc
import inspect
import weakref
from asyncio import selector_events
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from calltracking.config import Config
from calltracking.heap import YOUNG_THRESHOLD, release_lost_transports, settle_after_startup
from calltracking.serve import running


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_settling_freezes_what_lives_now_and_makes_young_passes_rarer(restored_gc: None) -> None:
    startup_object: list[object] = [[]]  # a container the collector tracks
    assert gc.is_tracked(startup_object)
    settle_after_startup()
    assert gc.get_freeze_count() > 0
    assert all(obj is not startup_object for obj in gc.get_objects())  # out of every pass
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD


def test_garbage_made_after_settling_is_still_collected(restored_gc: None) -> None:
    settle_after_startup()

    class Node:
        other: object = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b
    assert gc.collect() > 0


@pytest.fixture
def transports_as_asyncio_has_them() -> Iterator[None]:
    transport: Any = getattr(selector_events, "_SelectorSocketTransport")  # noqa: B009
    current = transport._call_connection_lost
    transport._call_connection_lost = inspect.unwrap(current)
    yield
    transport._call_connection_lost = current


@pytest.mark.parametrize("ending", ["close", "abort", "peer_close"])
async def test_a_lost_socket_transport_is_freed_without_the_collector(
    ending: str, transports_as_asyncio_has_them: None
) -> None:
    release_lost_transports()
    served: list[weakref.ref[asyncio.BaseTransport]] = []
    lost = asyncio.Event()

    class Served(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            served.append(weakref.ref(transport))
            if ending != "peer_close":
                getattr(transport, ending)()

        def connection_lost(self, exc: Exception | None) -> None:
            lost.set()

    server = await asyncio.get_running_loop().create_server(Served, "127.0.0.1", 0)
    gc.disable()
    try:
        async with server:
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            if ending == "peer_close":
                writer.close()
            else:
                with contextlib.suppress(ConnectionError):  # a reset may reach the reader
                    await reader.read()
            await asyncio.wait_for(lost.wait(), 5)
            await asyncio.sleep(0)  # the transport lets go after connection_lost returns
            writer.close()
            assert served[0]() is None  # freed by reference counting alone
    finally:
        gc.enable()


async def test_a_running_tracker_frees_each_closed_socket_without_the_collector(
    tmp_path: Path, transports_as_asyncio_has_them: None
) -> None:
    config = Config(database_url=f"sqlite+aiosqlite:///{tmp_path / 'ct.db'}", agi_port=0)
    async with running(config, ["agi"]) as state:
        gc.disable()
        try:
            # The change is to asyncio's transport class, so this process's side of the socket
            # shows it as well as the tracker's side, which the test cannot reach.
            reader, writer = await asyncio.open_connection("127.0.0.1", state.agi_port)
            transport = weakref.ref(writer.transport)
            writer.close()
            await writer.wait_closed()
            await asyncio.sleep(0)
            del reader, writer
            assert transport() is None
        finally:
            gc.enable()

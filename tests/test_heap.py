import asyncio
import contextlib
import gc
import weakref
from collections.abc import Iterator

import pytest

from calltracking.heap import YOUNG_THRESHOLD, release_lost_transports, settle_after_startup


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


@pytest.mark.parametrize("ending", ["close", "abort", "peer_close"])
async def test_a_lost_socket_transport_is_freed_without_the_collector(ending: str) -> None:
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

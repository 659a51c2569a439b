"""The FastAGI guard: a session that reaches a process whose event loop was frozen is answered at
once, unattributed (the dialplan takes its default route), and the service attributes calls
again once the loop keeps time. The freeze is real: the loop is blocked while a client thread
connects over TCP, as Asterisk would to a stalled tracker whose kernel still accepts."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from agi import AgiServer, Outcome
from agi.connection import KERNEL_WAIT_READABLE
from agi.guard import LoopWatchdog
from tests.agi.test_agi_server import BASE, NOW, PBX, MemoryRecorder, counted, play

FREEZE_S = 1.0


def _asterisk_during_freeze(port: int, block: bytes, go: threading.Event) -> bytes:
    """Connect once `go` is set, send the header, read everything until the server closes."""
    go.wait(10)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(block)
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
        return received


async def test_a_session_reaching_a_frozen_loop_is_answered_at_once_then_served_again() -> None:
    recorder = MemoryRecorder()
    server = AgiServer(recorder, PBX, "7", "127.0.0.1", 0, budget_s=5, clock=lambda: NOW)
    server.watchdog.max_lag_s = 0.3
    await server.start()
    try:
        go = threading.Event()
        client = asyncio.create_task(
            asyncio.to_thread(_asterisk_during_freeze, server.port, BASE.env_block, go)
        )
        await asyncio.sleep(0)  # the thread is started
        go.set()
        time.sleep(FREEZE_S)  # noqa: ASYNC251  # the tracker freezes: that is the test
        received = await asyncio.wait_for(client, 10)
        assert received == b""  # not one command: no CALLTRACKING_KIND, the dialplan fails over
        assert counted(server) == {Outcome.OVERLOADED: 1}
        assert server.watchdog.worst_lag_s >= FREEZE_S / 2
        # Back to the default (the whole budget), so a busy test machine's lag does not count.
        server.watchdog.max_lag_s = 5
        async with asyncio.timeout(10):
            while not server.watchdog.healthy():  # noqa: ASYNC110  # it holds for hold_s
                await asyncio.sleep(0.05)
        session = await play(server)
        assert session.sets[-1][0] == "CALLTRACKING_KIND"  # attributed again
        assert counted(server)[Outcome.RESOLVED] == 1
    finally:
        await server.stop()


async def _rested(server: AgiServer) -> None:
    async with asyncio.timeout(10):
        while not server.watchdog.resting:  # noqa: ASYNC110  # it rests after rest_after_s
            await asyncio.sleep(0.02)


def _resting_server() -> AgiServer:
    server = AgiServer(MemoryRecorder(), PBX, "7", "127.0.0.1", 0, budget_s=5, clock=lambda: NOW)
    server.watchdog = LoopWatchdog(0.3, rest_after_s=0.2)
    return server


async def test_a_quiet_watchdog_stops_ticking_and_the_next_session_starts_it_again() -> None:
    server = _resting_server()
    await server.start()
    try:
        await _rested(server)
        ticks = server.watchdog.ticks
        await asyncio.sleep(0.3)  # six ticks' worth
        assert server.watchdog.ticks == ticks  # an idle tracker is not woken 20 times a second
        session = await play(server)
        assert session.sets[-1][0] == "CALLTRACKING_KIND"
        assert not server.watchdog.resting
        async with asyncio.timeout(5):
            while server.watchdog.ticks == ticks:  # noqa: ASYNC110  # the session woke it
                await asyncio.sleep(0.02)
    finally:
        await server.stop()


@pytest.mark.skipif(
    not KERNEL_WAIT_READABLE, reason="a session's wait is read from Linux's TCP_INFO"
)
async def test_a_session_reaching_a_frozen_loop_after_a_quiet_spell_is_answered_at_once() -> None:
    server = _resting_server()
    await server.start()
    try:
        await _rested(server)
        go = threading.Event()
        client = asyncio.create_task(
            asyncio.to_thread(_asterisk_during_freeze, server.port, BASE.env_block, go)
        )
        await asyncio.sleep(0)
        go.set()
        time.sleep(FREEZE_S)  # noqa: ASYNC251  # the tracker freezes with no tick to see it
        received = await asyncio.wait_for(client, 10)
        assert received == b""
        assert counted(server) == {Outcome.OVERLOADED: 1}
        assert server.watchdog.worst_lag_s >= FREEZE_S / 2  # the header's own wait
        async with asyncio.timeout(10):
            while not server.watchdog.healthy():  # noqa: ASYNC110  # it holds for hold_s
                await asyncio.sleep(0.05)
        session = await play(server)
        assert session.sets[-1][0] == "CALLTRACKING_KIND"
    finally:
        await server.stop()

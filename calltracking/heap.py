"""Garbage-collector settings for a long-running server process.

CPython's cyclic collector walks every tracked object in a full (oldest-generation) pass. A
tracker holding thousands of sockets also holds the few hundred thousand objects of its startup
(modules, SQLAlchemy's tables and compiled statements, aiohttp's routes) that never die, and a
full pass over all of them paused the event loop for 100-350 ms several times while 4,000
visitors arrived (bench.ws_bench with a `gc.callbacks` probe: 1.3 s of a 5.6 s run). Freezing the
startup heap takes those objects out of every later pass; a larger first threshold makes the
young passes rarer, since a hello allocates a few hundred short-lived objects that reference
counting frees anyway.

A socket transport of CPython's selector loop keeps a bound method of its own (`_read_ready_cb`)
after its connection is lost, a reference cycle (python/cpython#100348: 3.12 drops it in
`close()`, not when a peer resets the connection; 3.11, which the image runs, never). So every
FastAGI dialogue and every visitor socket left its transport, socket and their dicts for the
collector: ~18,000 objects a young pass at 2,000 dialogues a second, each pass stopping the loop
for 8-15 ms (bench.agi_bench with a `gc.callbacks` probe), a stall every dialogue in flight
waits out. Dropping that method once the connection is lost, as 3.12's `close()` does, lets
reference counting free the transport at once.
"""

from __future__ import annotations

import functools
import gc
import logging
from asyncio import selector_events
from typing import Any

log = logging.getLogger(__name__)

YOUNG_THRESHOLD = 20_000
MIDDLE_THRESHOLD = 20
OLD_THRESHOLD = 20


def settle_after_startup() -> None:
    """Call once, when every part listens: what exists now lives as long as the process."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
    log.debug("heap settled: %d objects frozen", gc.get_freeze_count())


def release_lost_transports() -> None:
    """Make a selector socket transport drop its own bound read callback when its connection is
    lost, whichever way it was lost (idempotent; module docstring)."""
    # Private to asyncio, so reached through Any: typeshed does not describe it.
    transport: Any = getattr(selector_events, "_SelectorSocketTransport", None)
    lost = getattr(transport, "_call_connection_lost", None)
    if lost is None or getattr(lost, "releases_read_callback", False):
        return

    @functools.wraps(lost)
    def _call_connection_lost(self: Any, exc: BaseException | None) -> None:
        try:
            lost(self, exc)
        finally:
            # Read only by `_read_ready`, which the selector no longer calls: the reader went
            # with the connection (`close` and `_force_close` remove it before this runs).
            self._read_ready_cb = None

    _call_connection_lost.releases_read_callback = True  # type: ignore[attr-defined]
    transport._call_connection_lost = _call_connection_lost

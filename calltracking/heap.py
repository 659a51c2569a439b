"""Garbage-collector settings for a long-running server process.

CPython's cyclic collector walks every tracked object in a full (oldest-generation) pass. A
tracker holding thousands of sockets also holds the few hundred thousand objects of its startup
(modules, SQLAlchemy's tables and compiled statements, aiohttp's routes) that never die, and a
full pass over all of them paused the event loop for 100-350 ms several times while 4,000
visitors arrived (bench.ws_bench with a `gc.callbacks` probe: 1.3 s of a 5.6 s run). Freezing the
startup heap takes those objects out of every later pass; a larger first threshold makes the
young passes rarer, since a hello allocates a few hundred short-lived objects that reference
counting frees anyway.
"""

from __future__ import annotations

import gc
import logging

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

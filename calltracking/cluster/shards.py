"""Which shard a site belongs to: ownership is claimed per shard, not per site, so a busy
tracker with thousands of sites holds a bounded number of exclusive queues."""

from __future__ import annotations

import functools
import zlib

SHARDS = 64


@functools.lru_cache(maxsize=16384)  # every new visitor of a split site asks for each part
def shard_of(key: str, shards: int = SHARDS) -> int:
    """A stable shard in [0, shards): the same on every node and across restarts (CRC-32, not
    Python's salted `hash`). A part of a split site (`<site>#<part>`, core/engine/parts.py)
    takes the shards after its site's, so that its parts have owners of their own."""
    site_id, separator, part = key.partition("#")
    offset = int(part) if separator and part.isdigit() and len(part) <= 2 else 0
    return (zlib.crc32(site_id.encode()) + offset) % shards

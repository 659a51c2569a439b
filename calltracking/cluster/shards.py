"""Which shard a site belongs to: ownership is claimed per shard, not per site, so a busy
tracker with thousands of sites holds a bounded number of exclusive queues."""

from __future__ import annotations

import zlib

SHARDS = 64


def shard_of(site_id: str, shards: int = SHARDS) -> int:
    """A stable shard in [0, shards): the same on every node and across restarts (CRC-32, not
    Python's salted `hash`)."""
    return zlib.crc32(site_id.encode()) % shards

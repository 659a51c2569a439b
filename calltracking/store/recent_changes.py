"""What a site's last few versions changed, so that a node a few versions behind catches up on
those numbers and visitors instead of reloading the whole site.

Rules:
- Each group commit that bumps `sites.state_version` (site_batches.py) writes, in the same
  statement, the last `KEEP` entries this node knows, `(version, numbers, visitors)`, its own
  last, as long as they name at most `MAX_IDS` numbers and visitors in all. A node that caught
  up keeps the entries it read, so the list stays contiguous while nodes take turns.
- A node at version `mine` that finds `current` catches up only if the list holds every
  version in (mine, current]. Anything else (an operator's change bumps the version without an
  entry; a node further behind than the list reaches; a list that cannot be read) means a whole
  reload, as before.
- An entry names every number whose lease or release changed and every visitor any op of the
  batch touched or looked at (decider_writes.BatchWrites.changes); reading a few too many is
  cheap, missing one would leave the engine unlike the store.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.store import schema as t

log = logging.getLogger(__name__)
KEEP = 4
# Ids the stored list holds at most. A reconnect storm's batch names hundreds of visitors: a
# node behind by such a batch reloads the site whole (about as costly), and no batch writes
# tens of kilobytes with its bump for a list nobody may read.
MAX_IDS = 600


@dataclass(frozen=True, slots=True)
class Change:
    version: int
    numbers: frozenset[str]
    visitors: frozenset[str]


def encode(changes: Sequence[Change]) -> str:
    """The newest entries, at most KEEP and MAX_IDS ids in all (the list stops at the first
    entry that does not fit, so what it holds stays a run of versions)."""
    kept: list[Change] = []
    ids = 0
    for change in reversed(changes[-KEEP:]):
        ids += len(change.numbers) + len(change.visitors)
        if ids > MAX_IDS:
            break
        kept.append(change)
    return json.dumps(
        [[c.version, sorted(c.numbers), sorted(c.visitors)] for c in reversed(kept)],
        separators=(",", ":"),
    )


def decode(text: str | None) -> list[Change]:
    """The entries of a stored list; an unreadable one is no entries (a whole reload)."""
    if not text:
        return []
    try:
        raw = json.loads(text)
        return [
            Change(int(version), frozenset(map(str, numbers)), frozenset(map(str, visitors)))
            for version, numbers, visitors in raw
        ]
    except (ValueError, TypeError) as exc:
        log.warning("unreadable recent changes (%s); the site is reloaded whole", exc)
        return []


def between(changes: Sequence[Change], mine: int, current: int) -> list[Change] | None:
    """The entries for every version in (mine, current], or None when one is missing."""
    wanted = {c.version: c for c in changes if mine < c.version <= current}
    if mine < 0 or len(wanted) != current - mine:
        return None
    return [wanted[v] for v in range(mine + 1, current + 1)]


async def read(conn: AsyncConnection, site_id: str, part: int | None = None) -> list[Change]:
    """The site's list, or a split site's part's own (its versions are the part's)."""
    if part is None:
        query = sa.select(t.sites.c.recent_changes).where(t.sites.c.id == site_id)
    else:
        p = t.site_parts.c
        query = sa.select(p.recent_changes).where(p.site_id == site_id, p.part == part)
    return decode(await conn.scalar(query))

"""A busy site split into parts that different nodes decide (`sites.decision_parts`).

Each part is a site of its own to the engine: its share of the pool, the visitors whose ids
fall in it, and their leases. What belongs to a part follows from the ids alone, so every node
and every restart agrees without asking anyone:
- a visitor is in part `part_of(visitor_id)`; a new visitor's id is drawn until it falls in the
  part that decides its hello (`ids_in_part`), so a node serves the new visitors of its own
  sockets in the part it owns, without forwarding them;
- a number is in the part of the visitor who holds it, else of the last visitor who held it
  (its hold is theirs), else of its own digits (`number_part`). A part leases only its own
  numbers to its own visitors, so a number stays in its part until the split changes; after a
  change every lease is still in its visitor's part, and the idle numbers spread by digits;
- the pool's bounds (`pool_min`, `pool_max`) are shared between the parts (`part_settings`).
The per-address rules (the hello rate, the lease cap) hold per part, and a part's waiters wait
for its own numbers: a split site gives up that much exactness for a second node.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable

from calltracking.core.engine.pool import Number
from calltracking.core.settings import SiteSettings

MAX_PARTS = 16
_SEPARATOR = "#"


def part_of(key: str, parts: int) -> int:
    """The part an id falls in: stable on every node and across restarts (CRC-32)."""
    if parts <= 1:
        return 0
    return zlib.crc32(key.encode()) % parts


def number_part(number: Number, parts: int) -> int:
    holder = number.lease.visitor_id if number.lease is not None else None
    return holder_part(number.e164, number.last_visitor_id, holder, parts)


def holder_part(e164: str, last_visitor_id: str | None, holder: str | None, parts: int) -> int:
    """`number_part` from a number's stored fields (`holder`: its lease's visitor), before
    the number is built: a part loads only its own."""
    return part_of(holder or last_visitor_id or e164, parts)


def ids_in_part(ids: Callable[[], str], part: int, parts: int) -> Callable[[], str]:
    """`ids`, redrawn until the id falls in `part` (about `parts` draws each)."""
    if parts <= 1:
        return ids

    def drawn() -> str:
        while True:
            candidate = ids()
            if part_of(candidate, parts) == part:
                return candidate

    return drawn


def part_settings(settings: SiteSettings, part: int, parts: int) -> SiteSettings:
    """The site's settings as one part applies them: its share of `pool_min` and `pool_max`
    (the first parts take the remainder, so the shares add up to the site's)."""
    if parts <= 1:
        return settings
    return dataclasses.replace(
        settings,
        pool_min=_share(settings.pool_min, part, parts),
        pool_max=_share(settings.pool_max, part, parts),
    )


def _share(total: int, part: int, parts: int) -> int:
    return total // parts + (part < total % parts)


def decision_key(site_id: str, part: int, parts: int) -> str:
    """What a part is known by to the group commits, the locks and the owners: the site's id
    for an unsplit site, `<site>#<part>` for a part."""
    return site_id if parts <= 1 else f"{site_id}{_SEPARATOR}{part}"


def split_key(key: str) -> tuple[str, int | None]:
    """`decision_key`'s inverse: (site, part), part None for an unsplit site's key; ValueError
    for a part that is not a number from 0 to MAX_PARTS - 1."""
    site_id, separator, part = key.partition(_SEPARATOR)
    if not separator:
        return key, None
    if not part.isdigit() or len(part) > 2 or not 0 <= int(part) < MAX_PARTS:
        raise ValueError(f"not a site part: {key!r}")
    return site_id, int(part)

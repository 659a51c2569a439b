"""`calltracking split-site`: decide one busy site in parts on several nodes (core/engine/parts.py).

Rules:
- The split is the operator's, not the tenant's: it changes where decisions are made, and
  what a site gives up for it (per-address rules and waiters per part), not what the site is.
- It takes the site's lock exclusively and bumps the site's version, as any operator change
  does: every node's engines of the site, split or not, reload from the database at their next
  batch, and a batch of the old split fails its changes once to route them again
  (site_batches.SplitChanged). Leases stay where they are: a lease is in its visitor's part
  under any split.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

from calltracking.config import Config
from calltracking.core.engine.parts import MAX_PARTS
from calltracking.core.errors import InvalidInput
from calltracking.store import schema as t
from calltracking.store import site_state
from calltracking.store.db import Database
from calltracking.store.sites import get_site

log = logging.getLogger(__name__)


async def split_site(db: Database, site_id: str, parts: int) -> int:
    """Decide the site in `parts` parts from now on (1: one decider); returns the parts it had.
    LookupError for a site that does not exist or was deleted."""
    if isinstance(parts, bool) or not isinstance(parts, int) or not 1 <= parts <= MAX_PARTS:
        raise InvalidInput("parts", f"must be a whole number from 1 to {MAX_PARTS}")
    async with db.write() as conn:
        await site_state.lock_site(conn, site_id)
        site = await get_site(conn, site_id)
        if site is None or site.deleted_at is not None:
            raise LookupError(f"no site {site_id}")
        if site.decision_parts != parts:
            await conn.execute(
                sa.update(t.sites).where(t.sites.c.id == site_id).values(decision_parts=parts)
            )
            await site_state.bump(conn, site_id)
    return site.decision_parts


async def split_site_cli(config: Config, site_id: str, parts: int) -> int:
    db = Database(config.database_url)
    try:
        before = await split_site(db, site_id, parts)
    except LookupError as exc:
        print(f"calltracking split-site: {exc}")
        return 1
    except InvalidInput as exc:
        print(f"calltracking split-site: {exc}")
        return 2
    finally:
        await db.close()
    print(f"site {site_id}: decided in {parts} part(s) (was {before})")
    return 0

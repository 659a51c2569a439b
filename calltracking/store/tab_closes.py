"""Closing a tab for the decider (store/deciders.py): the batch step that closes it on the
engine, and the closes a database outage interrupted, retried by the sweeper.

Rules:
- A close goes through the site's group commits like any change (site_batches.py).
- A tab closed while the database is out is closed again by the sweeper, at the time it really
  closed: the lease still ends (its hold starting then) once the database is back. Closes are
  retried in order; when one fails again, it and the rest wait for the next round, in order.
- The last tab of a visitor closing closes its open display; the visitors whose display the
  close changed are returned (the closing visitor aside) so the hub refreshes them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core.engine import SiteEngine
from calltracking.core.engine import events as ev
from calltracking.store.decider_writes import BatchWrites
from calltracking.store.shown_numbers import changed_visitors
from calltracking.store.site_batches import SiteBatches
from calltracking.store.sites import Site
from calltracking.store.visitor_identity import ensure_visitor


class TabCloses:
    """Tab closes submitted as batches, and those waiting for the database to come back."""

    def __init__(self, batches: SiteBatches) -> None:
        self._batches = batches
        self._to_retry: list[tuple[Site, str, str, datetime]] = []

    @property
    def pending(self) -> bool:
        """Some closes wait for a retry."""
        return bool(self._to_retry)

    async def close(self, site: Site, visitor_id: str, tab_id: str, now: datetime) -> set[str]:
        """Close a tab at `now`; when the database is out, the sweeper tries again, so the
        lease still ends (its hold starting when the tab really closed) once it is back."""

        async def op(conn: AsyncConnection, engine: SiteEngine, writes: BatchWrites) -> set[str]:
            return await close_tab(conn, engine, writes, visitor_id, tab_id, now)

        try:
            changed: set[str] = await self._batches.submit(site, op, now, visitor_id)
        except Exception:
            self._to_retry.append((site, visitor_id, tab_id, now))
            raise
        return changed

    async def retry(self) -> set[str]:
        pending, self._to_retry = self._to_retry, []
        changed: set[str] = set()
        for number, (site, visitor_id, tab_id, at) in enumerate(pending):
            try:
                changed |= await self.close(site, visitor_id, tab_id, at)
            except Exception:
                # Still out: the rest wait for the next round, in order (the failed one is
                # queued again by `close`).
                self._to_retry.extend(pending[number + 1 :])
                break
        return changed


async def close_tab(
    conn: AsyncConnection,
    engine: SiteEngine,
    writes: BatchWrites,
    visitor_id: str,
    tab_id: str,
    now: datetime,
) -> set[str]:
    """The batch step: the tab closed on the engine, its row dropped (or never inserted)."""
    await ensure_visitor(conn, engine, writes, visitor_id, now)
    effects = engine.handle(ev.TabClosed(visitor_id, tab_id), now)
    writes.add(effects, engine)
    if writes.tabs_new.pop(tab_id, None) is None:
        writes.tabs_gone.add(tab_id)
    visitor = engine.visitors.get(visitor_id)
    if visitor is not None and not visitor.tabs:
        writes.show(visitor_id, None, "", now)
        writes.touched.add(visitor_id)
    return changed_visitors(effects) - {visitor_id}

"""Who a visitor is, for the decider's batch steps (store/deciders.py): a returning visitor
restored from the store, and the analytics ids its hello carries.

Rules:
- A visitor the engine does not hold (a returning visitor, or one forgotten as idle) is
  restored from the store, once per batch: a forged id is looked up once, not by every op that
  names it.
- The analytics ids are read from the hello alone (no I/O): GA's client id, GA's session id
  (the page's own when it is all digits, else from the `_ga_<ID>` cookies of the site's GA4
  measurement id) and Metrika's client id; the decider writes them on the visit.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core.analytics_ids import ga_client_id, ga_session_id, ym_client_id
from calltracking.core.engine import SiteEngine
from calltracking.store.decider_state import restore_visitors
from calltracking.store.decider_writes import BatchWrites
from calltracking.store.sites import Site
from calltracking.store.visitors import Hello


async def ensure_visitor(
    conn: AsyncConnection,
    engine: SiteEngine,
    writes: BatchWrites,
    visitor_id: str,
    now: datetime,
) -> None:
    """The visitor in the engine, from the store if need be (once per batch: a forged id
    is looked up once, not by every op that names it)."""
    writes.named.add(visitor_id)
    if visitor_id not in engine.visitors and visitor_id not in writes.looked_up:
        writes.looked_up.add(visitor_id)
        await restore_visitors(conn, engine, [visitor_id], now)


def analytics_ids(site: Site, hello: Hello) -> dict[str, str | None]:
    ga4 = site.settings.analytics.ga4
    return {
        "ga_client_id": ga_client_id(hello.ga),
        "ga_session_id": (
            hello.ga_session
            if hello.ga_session and hello.ga_session.isdigit()
            else ga_session_id(hello.ga_cookies, ga4.measurement_id if ga4 else None)
        ),
        "ym_client_id": ym_client_id(hello.ym),
    }

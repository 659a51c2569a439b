"""Pool sizing from a site's own traffic: `calltracking advise SITE` and the API's
`GET /api/v1/sites/{id}/advice` share this.

Rules:
- The window is the last `days` days (1 to MAX_DAYS) before `now`; the replay runs in a worker
  thread (it is CPU work: seconds for a busy week) so a server's event loop goes on serving.
- The pool size now is the site's pool numbers (static ones apart), or `pool_max` when the pool
  is still empty (it grows on demand up to that).
- The answer is JSON: the advice, the candidates tried, what the traffic held and left out, and
  the limits of reading stored traffic as what really happened.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from calltracking.config import Config
from calltracking.core.errors import InvalidInput
from calltracking.simulate.advise import advise
from calltracking.simulate.site_traffic import LIMITS, to_traffic
from calltracking.store.db import Database
from calltracking.store.queries.pool_states import pool_size
from calltracking.store.queries.site_traffic import load_site_facts
from calltracking.store.sites import Site, get_site

DEFAULT_DAYS = 7
MAX_DAYS = 31


def check_inputs(target: float, days: int) -> None:
    if not 0 < target <= 1:
        raise InvalidInput("target", "must be a share above 0 and at most 1, e.g. 0.95")
    if not 1 <= days <= MAX_DAYS:
        raise InvalidInput("days", f"must be a whole number of days from 1 to {MAX_DAYS}")


async def site_advice(
    db: Database, site: Site, *, target: float, days: int, now: datetime
) -> dict[str, Any]:
    check_inputs(target, days)
    since = now - timedelta(days=days)
    async with db.read() as conn:
        loaded = await load_site_facts(conn, site.id, since, now)
        size = await pool_size(conn, site.id) or site.settings.pool_max
    traffic = to_traffic(loaded.facts, loaded.since, now, site.settings.idle_timeout_s)
    replayed = sum(1 for row in traffic.rows if row.call_at_s is not None)
    result = await asyncio.to_thread(
        advise, traffic.rows, site.settings, size, target, site.domains
    )
    notes = list(LIMITS)
    if loaded.truncated:
        notes.append(f"Only the latest visits were replayed, from {loaded.since.isoformat()}.")
    if replayed == 0:
        notes.append("No call could be replayed: the advice has no evidence yet.")
    return {
        "site_id": site.id,
        "since": loaded.since.isoformat(),
        "until": now.isoformat(),
        "traffic": {
            "visits": len(traffic.rows),
            "visitors": len({row.visitor for row in traffic.rows}),
            "calls": traffic.calls_seen,
            "calls_replayed": replayed,
            "calls_left_out": traffic.left_out,
        },
        **result.to_json(),
        "limits": notes,
    }


async def run_advise_cli(config: Config, site_id: str, *, target: float, days: int) -> int:
    db = Database(config.database_url)
    try:
        check_inputs(target, days)
        async with db.read() as conn:
            site = await get_site(conn, site_id)
        if site is None or site.deleted_at is not None:
            print(f"calltracking advise: site {site_id} does not exist", file=sys.stderr)
            return 1
        answer = await site_advice(db, site, target=target, days=days, now=datetime.now(UTC))
    except InvalidInput as exc:
        print(f"calltracking advise: {exc.message}", file=sys.stderr)
        return 2
    finally:
        await db.close()
    print(json.dumps(answer, indent=2))
    return 0

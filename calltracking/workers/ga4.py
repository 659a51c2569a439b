"""GA4 exporter: one Measurement Protocol hit per due `ga4` export.

Rules:
- A row is claimed (attempts bumped, held `CLAIM_S`) in one transaction before the hit and its
  outcome stored in another right after, so a recorded send is never repeated, by this worker or
  a new one; only a crash between the hit and its record can repeat it (GA4 has no idempotency
  key), once the claim lapses.
- The payload is built at `now` from the stored call, so a call that became spam or too old is
  `skipped` without a hit; a site whose GA4 target was removed leaves the row `not_configured`.
- One failing export is logged with its call id and left to its claim's lapse; the others go on.
- A round opens a write transaction only when a read found an export due.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import aiohttp
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.core.records import CallRecord
from calltracking.core.settings import Ga4Target
from calltracking.exporters.ga4 import build_ga4_payload, send_ga4
from calltracking.exporters.outcome import Outcome, Skipped
from calltracking.store.calls import call_record
from calltracking.store.db import Database
from calltracking.store.exports.due import next_export_due
from calltracking.store.exports.rows import Claim, claim_due, mark_not_configured, record_outcome
from calltracking.store.sites import get_site

log = logging.getLogger(__name__)
TARGET = "ga4"


@dataclass(frozen=True, slots=True)
class _Job:
    claim: Claim
    call: CallRecord | None
    target: Ga4Target | None


class Ga4Exporter:
    def __init__(
        self,
        db: Database,
        endpoint: str,
        session: aiohttp.ClientSession,
        *,
        jitter: Callable[[], float] = random.random,
        timeout_s: float = 10.0,
        batch: int = 50,
        concurrency: int = 8,
    ) -> None:
        self.db = db
        self.endpoint = endpoint
        self.session = session
        self.jitter = jitter
        self.timeout_s = timeout_s
        self.batch = batch
        self._slots = asyncio.Semaphore(concurrency)

    async def run_once(self, now: datetime) -> Counter[str]:
        """Export every `ga4` row due at `now`; counts of the states they ended in."""
        counts: Counter[str] = Counter()
        while True:
            # Nothing due is the usual round (one runs after every second of calls): a read
            # says so without a write transaction, which would hold this process's writer turn
            # for its statements' hops to aiosqlite (20-40 ms under load, FastAGI's call
            # starts waiting behind it).
            due = await next_export_due(self.db, TARGET)
            if due is None or due > now:
                return counts
            async with self.db.write() as conn:
                claims = await claim_due(conn, TARGET, now, limit=self.batch)
                jobs = [await _load(conn, claim) for claim in claims]
            states = await asyncio.gather(*(self._export(job, now) for job in jobs))
            counts.update(states)
            if len(claims) < self.batch:
                return counts

    async def _export(self, job: _Job, now: datetime) -> str:
        call_id = job.claim.call_id
        try:
            async with self._slots:
                return await self._export_one(job, now)
        except Exception:
            log.exception(
                "ga4 export of call %s failed; it is retried when its claim lapses", call_id
            )
            return "error"

    async def _export_one(self, job: _Job, now: datetime) -> str:
        claim = job.claim
        if job.target is None or job.call is None:
            async with self.db.write() as conn:
                await mark_not_configured(conn, claim, now, "the site has no GA4 target")
            return "not_configured"
        payload = build_ga4_payload(job.call, now)
        outcome: Outcome
        if isinstance(payload, Skipped):
            outcome = payload
        else:
            outcome = await send_ga4(
                self.session, self.endpoint, job.target, payload, timeout_s=self.timeout_s
            )
        async with self.db.write() as conn:
            state = await record_outcome(conn, claim, outcome, now, jitter=self.jitter())
        log.info(
            "ga4 export of call %s, attempt %d: %s -> %s",
            claim.call_id,
            claim.attempts,
            outcome,
            state,
        )
        return str(state) if state is not None else "lapsed"


async def _load(conn: AsyncConnection, claim: Claim) -> _Job:
    call = await call_record(conn, claim.call_id)
    site = await get_site(conn, claim.site_id) if claim.site_id else None
    target = site.settings.analytics.ga4 if site is not None else None
    return _Job(claim, call, target)

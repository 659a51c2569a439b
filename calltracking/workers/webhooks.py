"""Webhook deliveries: every `call.*` and `lease.*` event, to each of its site's webhooks that
subscribed to it, signed, retried with back-off, logged per call.

Rules:
- The dispatcher consumes the durable work queue `calltracking.webhooks` (one consumer of the
  events per deployment, however many nodes run workers). On RabbitMQ the relay copies to it
  only the events `WebhookSites.wants` takes (bus/rabbit.py, "Routed queues"; serve.py).
- For each matching webhook a delivery row is written first, unique per (event id, url): a bus
  redelivery, or the same event handled by two nodes, adds no row and so sends nothing twice.
  The new rows are then claimed and delivered at once; failures wait for `run_once`.
- Retries read the event body from the outbox and the secret from the site's settings as they
  are now: a webhook removed (or whose URL changed) since the event fails its delivery.
- A delivery is `delivered` on 2xx, retried on 5xx/408/429/timeouts up to `MAX_ATTEMPTS`
  attempts, `failed` on another 4xx.
- The session given decides which addresses may be reached (`exporters.targets.webhook_session`):
  a refused target is a `failed` delivery whose error says why, never retried.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Callable
from datetime import datetime

import aiohttp

from calltracking.core.events import Event
from calltracking.exporters.outcome import Hopeless, Outcome
from calltracking.exporters.webhooks import deliver, matches
from calltracking.store.db import Database
from calltracking.store.exports.webhook_deliveries import (
    Delivery,
    add_deliveries,
    claim_due_deliveries,
    outbox_event,
    record_delivery,
)
from calltracking.store.sites import get_site
from calltracking.store.webhook_sites import WebhookSites

log = logging.getLogger(__name__)
QUEUE = "calltracking.webhooks"
KEYS = ("call.*", "lease.*")


class WebhookDispatcher:
    def __init__(
        self,
        db: Database,
        session: aiohttp.ClientSession,
        clock: Callable[[], datetime],
        *,
        jitter: Callable[[], float] = random.random,
        timeout_s: float = 10.0,
        batch: int = 50,
        concurrency: int = 8,
        sites: WebhookSites | None = None,
    ) -> None:
        self.db = db
        self.session = session
        self.clock = clock
        self.jitter = jitter
        self.timeout_s = timeout_s
        self.batch = batch
        self._slots = asyncio.Semaphore(concurrency)
        # Shared with the bus's route to this queue in a process that relays too (serve.py).
        self._sites = sites if sites is not None else WebhookSites(db)

    def wants(self, event: Event) -> bool:
        """The bus's early check (bus/base.py): False only for an event `accept` would drop.
        Such an event is then never queued here (in-process bus), nor relayed (store/outbox.py,
        "Settled rows"), nor copied to this queue by a broker's publishers (bus/rabbit.py)."""
        return self._sites.wants(event)

    async def handle(self, event: Event) -> None:
        """The bus handler: record the event's deliveries, then make them."""
        now = self.clock()
        if await self.accept(event, now):
            async with self.db.write() as conn:
                claims = await claim_due_deliveries(conn, now, event_id=event.id)
            await asyncio.gather(*(self._deliver(claim, event, now) for claim in claims))

    async def accept(self, event: Event, now: datetime) -> int:
        """Write a delivery row per subscribed webhook; how many were new."""
        site_id = event.data.get("site_id")
        if not isinstance(site_id, str):
            return 0
        site = await self._sites.site(site_id)
        if site is None:
            return 0
        urls = [w.url for w in site.settings.analytics.webhooks if matches(w, event.key)]
        if not urls:
            return 0
        async with self.db.write() as conn:
            call_id = event.data.get("id") if event.key.startswith("call.") else None
            return await add_deliveries(
                conn, event, site_id, call_id if isinstance(call_id, str) else None, urls, now
            )

    async def run_once(self, now: datetime) -> Counter[str]:
        """Retry every delivery due at `now`; counts of the states they ended in."""
        counts: Counter[str] = Counter()
        while True:
            async with self.db.write() as conn:
                claims = await claim_due_deliveries(conn, now, limit=self.batch)
            counts.update(
                await asyncio.gather(*(self._deliver(claim, None, now) for claim in claims))
            )
            if len(claims) < self.batch:
                return counts

    async def _deliver(self, claim: Delivery, event: Event | None, now: datetime) -> str:
        try:
            async with self._slots:
                return await self._deliver_one(claim, event, now)
        except Exception:
            log.exception(
                "webhook delivery %d (event %s, call %s) failed; retried when its claim lapses",
                claim.id,
                claim.event_id,
                claim.call_id,
            )
            return "error"

    async def _deliver_one(self, claim: Delivery, event: Event | None, now: datetime) -> str:
        async with self.db.read() as conn:
            site = await get_site(conn, claim.site_id)
            if event is None:
                event = await outbox_event(conn, claim.event_id)
        hooks = site.settings.analytics.webhooks if site is not None else ()
        target = next((hook for hook in hooks if hook.url == claim.url), None)
        outcome: Outcome
        if target is None:
            outcome = Hopeless("the webhook is no longer configured")
        elif event is None:
            outcome = Hopeless(f"event {claim.event_id} is no longer in the outbox")
        else:
            outcome = await deliver(self.session, target, event, now, timeout_s=self.timeout_s)
        async with self.db.write() as conn:
            state = await record_delivery(conn, claim, outcome, now, jitter=self.jitter())
        log.info(
            "webhook %s of event %s (call %s), attempt %d: %s",
            claim.event_key,
            claim.event_id,
            claim.call_id,
            claim.attempts,
            outcome,
        )
        return state

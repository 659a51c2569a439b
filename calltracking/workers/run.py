"""Runs the exporters and the webhook dispatcher until cancelled (`calltracking serve`).

None of them polls: GA4 exports sleep until the next export falls due or a call's outbox rows
were committed (its exports are written in the same transaction); webhook retries sleep until
the next delivery falls due (new events arrive from the bus and are delivered at once); each
looks again after `IDLE_FALLBACK_S` at the latest, and rounds start at least `MIN_GAP_S` apart
under load. Metrika uploads run every `CALLTRACKING_EXPORT_INTERVAL_S` (Metrika wants batches).
A round that fails is logged once and tried again after `MIN_GAP_S`; cancellation stops
everything and closes the webhook subscription, whose event in hand goes back to the queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import aiohttp

from calltracking.bus.wake import sleep_until
from calltracking.exporters.targets import webhook_session
from calltracking.services import Services
from calltracking.store.exports.due import next_delivery_due, next_export_due
from calltracking.workers import webhooks
from calltracking.workers.ga4 import Ga4Exporter
from calltracking.workers.metrika import MetrikaExporter

log = logging.getLogger(__name__)
MIN_GAP_S = 1.0
IDLE_FALLBACK_S = 30.0


async def run_exporters(services: Services) -> None:
    config = services.config
    # Webhook URLs come from tenants, so their session reaches only public addresses (unless
    # the operator allows private ones); GA4 and Metrika endpoints come from the operator.
    hooks_session = webhook_session(allow_private=config.webhook_allow_private)
    async with aiohttp.ClientSession() as session, hooks_session:
        ga4 = Ga4Exporter(services.db, config.ga4_endpoint, session)
        metrika = MetrikaExporter(
            services.db, config.metrika_endpoint, session, poll_s=config.export_interval_s
        )
        hooks = webhooks.WebhookDispatcher(
            services.db, hooks_session, services.clock, sites=services.webhook_sites
        )
        subscription = await services.bus.subscribe(
            webhooks.QUEUE, webhooks.KEYS, hooks.handle, wants=hooks.wants
        )
        db, clock = services.db, services.clock
        schedules = [
            (
                _Schedule("ga4", clock, lambda: next_export_due(db, "ga4")).woken_by(
                    services.outbox_wake.subscribe()
                ),
                ga4.run_once,
            ),
            (_Schedule("metrika", clock, every_s=config.export_interval_s), metrika.run_once),
            (_Schedule("webhooks", clock, lambda: next_delivery_due(db)), hooks.run_once),
        ]
        try:
            async with asyncio.TaskGroup() as tasks:
                for schedule, job in schedules:
                    tasks.create_task(_loop(schedule, job), name=f"worker-{schedule.name}")
        finally:
            await subscription.close()


@dataclass(frozen=True)
class _Schedule:
    """When a worker's next round is: its next due row, a wake-up, or `every_s` from now."""

    name: str
    clock: Callable[[], datetime]
    next_due: Callable[[], Awaitable[datetime | None]] | None = None
    every_s: float = IDLE_FALLBACK_S
    wake: asyncio.Event | None = None

    def woken_by(self, wake: asyncio.Event) -> _Schedule:
        return _Schedule(self.name, self.clock, self.next_due, self.every_s, wake)

    async def wait_s(self) -> float:
        due = await self.next_due() if self.next_due is not None else None
        if due is None:
            return self.every_s
        return min(self.every_s, (due - self.clock()).total_seconds())


async def _loop(schedule: _Schedule, job: Callable[[datetime], Awaitable[Counter[str]]]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        if schedule.wake is not None:
            schedule.wake.clear()  # before the round: a commit during it wakes the next one
        wait_s = MIN_GAP_S
        try:
            counts = await job(schedule.clock())
            wait_s = await schedule.wait_s()
        except Exception:
            log.exception("%s round failed; trying again", schedule.name)
        else:
            if counts:
                log.debug("%s round: %s", schedule.name, dict(counts))
        await sleep_until(wait_s, schedule.wake)
        await asyncio.sleep(max(0.0, MIN_GAP_S - (loop.time() - started)))

"""Runs the exporters and the webhook dispatcher until cancelled (`calltracking serve`).

GA4 exports and webhook retries are looked for every `DUE_POLL_S` (they are due one by one);
Metrika uploads run every `CALLTRACKING_EXPORT_INTERVAL_S` (Metrika wants batches). A round that
fails is logged once and tried again next time; cancellation stops everything and closes the
webhook subscription, whose event in hand goes back to the queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime

import aiohttp

from calltracking.exporters.targets import webhook_session
from calltracking.services import Services
from calltracking.workers import webhooks
from calltracking.workers.ga4 import Ga4Exporter
from calltracking.workers.metrika import MetrikaExporter

log = logging.getLogger(__name__)
DUE_POLL_S = 1.0


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
        hooks = webhooks.WebhookDispatcher(services.db, hooks_session, services.clock)
        subscription = await services.bus.subscribe(webhooks.QUEUE, webhooks.KEYS, hooks.handle)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(_every("ga4", DUE_POLL_S, ga4.run_once, services.clock))
                tasks.create_task(
                    _every("metrika", config.export_interval_s, metrika.run_once, services.clock)
                )
                tasks.create_task(_every("webhooks", DUE_POLL_S, hooks.run_once, services.clock))
        finally:
            await subscription.close()


async def _every(
    name: str,
    interval_s: float,
    job: Callable[[datetime], Awaitable[Counter[str]]],
    clock: Callable[[], datetime],
) -> None:
    while True:
        try:
            counts = await job(clock())
        except Exception:
            log.exception("%s round failed; trying again in %s s", name, interval_s)
        else:
            if counts:
                log.debug("%s round: %s", name, dict(counts))
        await asyncio.sleep(interval_s)

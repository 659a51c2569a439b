"""Metrika exporter: per site, one calls upload of every due `metrika` export; polls of the
uploads' processing status; the counters' extended join window.

Rules:
- `run_once` is one round (the runner calls it every `CALLTRACKING_EXPORT_INTERVAL_S`): due rows
  are claimed as in the GA4 exporter, grouped by site, and each site's calls go in one CSV.
  Calls the builder leaves out are `skipped` with the reason; a site without a Metrika target
  leaves its rows `not_configured`.
- An accepted upload makes its rows `sent` with the upload id in `detail`; 429/420 (Metrika's
  quota answers), 5xx and timeouts put the whole batch back with one back-off, so it stays one
  upload; another 4xx fails the batch (`retry_export` can bring rows back).
- Each upload's status is polled, with growing pauses, until Metrika says `PROCESSED` or a
  failure (its rows then `failed`), or `MAX_POLLS` polls went by.
- A counter with `extended_threshold` gets the window switched on once: remembered in the
  store, so a restart does not ask again. A refusal is not asked again by this worker object.
"""

from __future__ import annotations

import logging
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import aiohttp

from calltracking.core.records import CallRecord
from calltracking.core.settings import MetrikaTarget
from calltracking.exporters.metrika import (
    MetrikaError,
    UploadResult,
    build_calls_csv,
    enable_extended_threshold,
    upload_calls,
    upload_status,
)
from calltracking.exporters.outcome import Hopeless, RetryLater, Sent, backoff_delay
from calltracking.store.calls import call_record
from calltracking.store.db import Database
from calltracking.store.exports.metrika_uploads import (
    Upload,
    record_upload_status,
    remember_threshold,
    thresholds_enabled,
    upload_detail,
    uploads_to_poll,
)
from calltracking.store.exports.rows import Claim, claim_due, mark_not_configured, record_outcome
from calltracking.store.sites import get_site, list_sites

log = logging.getLogger(__name__)
TARGET = "metrika"
MAX_POLLS = 30
DONE_STATUSES = frozenset({"PROCESSED"})


class MetrikaExporter:
    def __init__(
        self,
        db: Database,
        endpoint: str,
        session: aiohttp.ClientSession,
        *,
        poll_s: float = 60.0,
        jitter: Callable[[], float] = random.random,
        timeout_s: float = 60.0,
        batch: int = 10_000,
    ) -> None:
        self.db = db
        self.endpoint = endpoint
        self.session = session
        self.poll_s = max(poll_s, 1.0)
        self.jitter = jitter
        self.timeout_s = timeout_s
        self.batch = batch
        self._refused_thresholds: set[str] = set()

    async def run_once(self, now: datetime) -> Counter[str]:
        counts: Counter[str] = Counter()
        await self._thresholds(now, counts)
        await self._upload_due(now, counts)
        await self._poll(now, counts)
        return counts

    async def _thresholds(self, now: datetime, counts: Counter[str]) -> None:
        async with self.db.read() as conn:
            sites = await list_sites(conn, None)
            done = await thresholds_enabled(conn) | self._refused_thresholds
        for site in sites:
            target = site.settings.analytics.metrika
            if target is None or not target.extended_threshold or target.counter_id in done:
                continue
            outcome = await enable_extended_threshold(
                self.session, self.endpoint, target, timeout_s=self.timeout_s
            )
            match outcome:
                case Sent():
                    async with self.db.write() as conn:
                        await remember_threshold(conn, target.counter_id, now)
                    done.add(target.counter_id)
                    counts["threshold_enabled"] += 1
                    log.info("metrika counter %s: extended threshold on", target.counter_id)
                case Hopeless(reason):
                    self._refused_thresholds.add(target.counter_id)
                    log.warning("site %s: %s", site.id, reason)
                case _:
                    log.info(
                        "site %s: extended threshold not switched on yet: %s", site.id, outcome
                    )

    async def _upload_due(self, now: datetime, counts: Counter[str]) -> None:
        groups: defaultdict[str | None, list[tuple[Claim, CallRecord | None]]] = defaultdict(list)
        async with self.db.write() as conn:
            for claim in await claim_due(conn, TARGET, now, limit=self.batch):
                groups[claim.site_id].append((claim, await call_record(conn, claim.call_id)))
            targets: dict[str | None, MetrikaTarget | None] = {}
            for site_id in groups:
                site = await get_site(conn, site_id) if site_id else None
                targets[site_id] = site.settings.analytics.metrika if site is not None else None
        for site_id, group in groups.items():
            try:
                await self._upload_site(targets[site_id], group, now, counts)
            except Exception:
                log.exception(
                    "metrika upload for site %s failed; its %d calls are retried when the "
                    "claim lapses",
                    site_id,
                    len(group),
                )
                counts["error"] += len(group)

    async def _upload_site(
        self,
        target: MetrikaTarget | None,
        group: Sequence[tuple[Claim, CallRecord | None]],
        now: datetime,
        counts: Counter[str],
    ) -> None:
        claims = {claim.call_id: claim for claim, _ in group}
        if target is None:
            async with self.db.write() as conn:
                for claim in claims.values():
                    await mark_not_configured(conn, claim, now, "the site has no Metrika target")
            counts["not_configured"] += len(claims)
            return
        records = [call for _, call in group if call is not None]
        csv_text, included, skipped = build_calls_csv(records, now)
        jitter = self.jitter()  # one back-off for the batch: it stays together
        async with self.db.write() as conn:
            for call_id, outcome in skipped:
                state = await record_outcome(conn, claims[call_id], outcome, now, jitter=jitter)
                counts[str(state) if state is not None else "lapsed"] += 1
        if not included:
            return
        result = await upload_calls(
            self.session, self.endpoint, target, csv_text, timeout_s=self.timeout_s
        )
        async with self.db.write() as conn:
            for call_id in included:
                claim = claims[call_id]
                if isinstance(result, UploadResult):
                    detail = upload_detail(result.id, result.status, 0)
                    poll_at = now + timedelta(seconds=self.poll_s)
                    state = await record_outcome(
                        conn, claim, Sent(detail), now, jitter=jitter, next_attempt_at=poll_at
                    )
                else:
                    state = await record_outcome(conn, claim, result, now, jitter=jitter)
                counts[str(state) if state is not None else "lapsed"] += 1
        if isinstance(result, UploadResult):
            counts["uploads"] += 1
        log.info(
            "metrika counter %s: %d calls, %d skipped: %s",
            target.counter_id,
            len(included),
            len(skipped),
            result,
        )

    async def _poll(self, now: datetime, counts: Counter[str]) -> None:
        async with self.db.read() as conn:
            uploads = await uploads_to_poll(conn, now)
            sites = {u.site_id: await get_site(conn, u.site_id) for u in uploads}
        for upload in uploads:
            site = sites[upload.site_id]
            target = site.settings.analytics.metrika if site is not None else None
            try:
                await self._poll_one(upload, target, now)
            except Exception:
                log.exception("metrika upload %s: status poll failed", upload.upload_id)
            counts["polls"] += 1

    async def _poll_one(self, upload: Upload, target: MetrikaTarget | None, now: datetime) -> None:
        status, failure = upload.status, None
        keep_polling = target is not None and upload.polls + 1 < MAX_POLLS
        if target is not None:
            try:
                status = await upload_status(
                    self.session, self.endpoint, target, upload.upload_id, timeout_s=self.timeout_s
                )
            except MetrikaError as exc:
                keep_polling = keep_polling and isinstance(exc.outcome, RetryLater)
                log.info("metrika upload %s: status unknown: %s", upload.upload_id, exc)
        if status in DONE_STATUSES:
            keep_polling = False
        elif status.endswith(("FAILURE", "FAILED")):
            keep_polling = False
            failure = f"metrika upload {upload.upload_id}: {status}"
        next_poll_at = None
        if keep_polling:
            delay = backoff_delay(
                upload.polls + 1,
                base_s=self.poll_s,
                cap_s=max(self.poll_s, 3600),
                jitter=self.jitter(),
            )
            next_poll_at = now + timedelta(seconds=delay)
        async with self.db.write() as conn:
            await record_upload_status(
                conn, upload, status, now, next_poll_at=next_poll_at, failure=failure
            )
        log.info("metrika upload %s: %s", upload.upload_id, status)

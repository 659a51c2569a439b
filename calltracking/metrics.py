"""Every metric the tracker exports, defined once, in one registry per `Services`.

Rules:
- The registry is per process part set (per app), never prometheus_client's global one: tests
  build many apps in one process, and two registries never share a series.
- Call sites record with one call (`hello_done`, `agi_dialogue_done`, `ami_event_done`); live
  figures owned elsewhere (open tabs, frames pushed, AMI sessions, parts up) are read at scrape
  time through `read_gauge` / `read_counter`, so the owners keep no metric objects.
- Database-wide figures (pools, outbox, export queues) are read at scrape time, only where
  `render` is given a database (the web nodes); every node reports the same values, so the
  dashboard and the alert rules take `max` over instances. A failed read sets
  `calltracking_metrics_db_ok` to 0 and leaves the other series out rather than failing /metrics.
- Labels have bounded values only: parts, AGI outcomes, pool states, export targets, `new|known`
  visitors, and at most `TOP_SITES` site keys.
- Names existing before this module are kept: `calltracking_ws_tabs`,
  `calltracking_number_frames_total`, `calltracking_part_up{part}`, and every
  `Health.counters` entry as `calltracking_<name>{outcome}`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from calltracking.store.queries.gauges import Gauges, read_gauges

if TYPE_CHECKING:
    from calltracking.store.db import Database

log = logging.getLogger(__name__)
TOP_SITES = 5
HELLO_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# 0.5 is the contract's FastAGI budget: the alert rule reads the bucket at exactly that bound.
AGI_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
AMI_LAG_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)

Reader = Callable[[], float]
PartsReader = Callable[[], Mapping[str, bool]]
LabelledReaders = Mapping[str, Callable[[], dict[str, float]]]


class Metrics:
    def __init__(
        self, parts: PartsReader = dict, outcome_counters: LabelledReaders | None = None
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._live = _Live(parts, {} if outcome_counters is None else outcome_counters)
        self._db = _DatabaseFigures()
        self.registry.register(self._live)
        self.registry.register(self._db)
        self.hello_seconds = Histogram(
            "calltracking_hello_seconds",
            "From a visitor's hello received to its first number frame sent.",
            buckets=HELLO_BUCKETS,
            registry=self.registry,
        )
        self.hellos = Counter(
            "calltracking_ws_hellos",
            "Hellos answered, by whether the visitor id was already known (a reconnecting tab "
            "or a returning visitor) or new.",
            ["visitor"],
            registry=self.registry,
        )
        self.agi_dialogue_seconds = Histogram(
            "calltracking_agi_dialogue_seconds",
            "One FastAGI connection from accept to close.",
            buckets=AGI_BUCKETS,
            registry=self.registry,
        )
        self.ami_event_lag_seconds = Histogram(
            "calltracking_ami_event_lag_seconds",
            "From an AMI event (Asterisk's Timestamp when sent, else its receipt) to its facts "
            "stored.",
            buckets=AMI_LAG_BUCKETS,
            registry=self.registry,
        )
        # Looked up once: `labels()` takes a lock and a dict lookup per call (a visible part of
        # a new visitor's CPU at a thousand a second).
        self._hellos_new, self._hellos_known = (
            self.hellos.labels("new"),
            self.hellos.labels("known"),
        )

    # -- recording, one call per call site ------------------------------------------------------
    def hello_done(self, seconds: float, known_visitor: bool) -> None:
        self.hello_seconds.observe(max(0.0, seconds))
        (self._hellos_known if known_visitor else self._hellos_new).inc()

    def agi_dialogue_done(self, seconds: float) -> None:
        self.agi_dialogue_seconds.observe(max(0.0, seconds))

    def ami_event_done(self, headers: Mapping[str, str], received_at: datetime) -> None:
        self.ami_event_lag_seconds.observe(event_lag_s(headers, received_at, datetime.now(UTC)))

    # -- figures owned elsewhere, read at scrape time -------------------------------------------
    def read_gauge(self, name: str, help_text: str, read: Reader) -> None:
        self._live.gauges[name] = (help_text, read)

    def read_counter(self, name: str, help_text: str, read: Reader) -> None:
        self._live.counters[name] = (help_text, read)

    async def render(self, db: Database | None, now: datetime) -> bytes:
        """The exposition text; with `db`, database-wide figures are read first."""
        if db is not None:
            try:
                async with db.read() as conn:
                    self._db.latest = await read_gauges(conn, now, TOP_SITES)
                self._db.ok = True
            except Exception:
                log.exception("metrics: database figures could not be read")
                self._db.ok, self._db.latest = False, None
        return generate_latest(self.registry)


def event_lag_s(headers: Mapping[str, str], received_at: datetime, now: datetime) -> float:
    """Seconds from the event to `now`: from Asterisk's own `Timestamp` (`timestampevents =
    yes`) when present and readable, else from when the listener received it."""
    sent = headers.get("Timestamp")
    if sent:
        try:
            return max(0.0, now.timestamp() - float(sent))
        except ValueError:
            pass
    return max(0.0, (now - received_at).total_seconds())


class _Live(Collector):
    def __init__(self, parts: PartsReader, outcome_counters: LabelledReaders) -> None:
        self.parts = parts
        self.outcome_counters = outcome_counters
        self.gauges: dict[str, tuple[str, Reader]] = {}
        self.counters: dict[str, tuple[str, Reader]] = {}

    def collect(self) -> Iterable[Metric]:
        for name, (help_text, read) in self.gauges.items():
            yield GaugeMetricFamily(name, help_text, value=_safe(read))
        for name, (help_text, read) in self.counters.items():
            yield CounterMetricFamily(name, help_text, value=_safe(read))
        up = GaugeMetricFamily("calltracking_part_up", "1 while the part works.", labels=["part"])
        for part, ok in self.parts().items():
            up.add_metric([part], float(ok))
        yield up
        for metric, read_all in self.outcome_counters.items():
            family = CounterMetricFamily(
                f"calltracking_{metric}", f"{metric} by outcome.", labels=["outcome"]
            )
            for label, value in read_all().items():
                family.add_metric([label], value)
            yield family


class _DatabaseFigures(Collector):
    def __init__(self) -> None:
        self.ok: bool | None = None  # None: this node does not read them
        self.latest: Gauges | None = None

    def collect(self) -> Iterable[Metric]:
        if self.ok is None:
            return
        yield GaugeMetricFamily(
            "calltracking_metrics_db_ok",
            "1 when the database-wide figures below were read at this scrape.",
            value=float(self.ok),
        )
        if self.latest is not None:
            yield from _database_families(self.latest)


def _database_families(g: Gauges) -> Iterable[Metric]:
    pool = GaugeMetricFamily(
        "calltracking_pool_numbers", "Pool numbers of all sites by state.", labels=["state"]
    )
    for state, n in sorted(g.pool.items()):
        pool.add_metric([state], float(n))
    yield pool
    yield GaugeMetricFamily(
        "calltracking_reserve_numbers", "Numbers in the reserve, of no site.", value=g.reserve
    )
    yield GaugeMetricFamily(
        "calltracking_pool_sites_exhausted",
        "Sites whose pool refused a visitor a number in the last 5 minutes.",
        value=float(g.sites_exhausted),
    )
    yield GaugeMetricFamily(
        "calltracking_pool_exhaustions_recent",
        "Visitors refused a number because the pool was exhausted, last 5 minutes, all sites.",
        value=float(g.exhaustions_recent),
    )
    top = GaugeMetricFamily(
        "calltracking_pool_exhaustions_recent_top",
        f"The same, for the {TOP_SITES} sites with the most (site key).",
        labels=["site"],
    )
    for site, n in g.top_exhausted.items():
        top.add_metric([site], float(n))
    yield top
    yield GaugeMetricFamily(
        "calltracking_outbox_pending", "Outbox events not yet published.", value=g.outbox_pending
    )
    yield GaugeMetricFamily(
        "calltracking_outbox_oldest_pending_seconds",
        "Age of the oldest unpublished outbox event (0 when none).",
        value=g.outbox_oldest_s,
    )
    yield from _export_families(g)


def _export_families(g: Gauges) -> Iterable[Metric]:
    names = (
        ("calltracking_export_pending", "Exports waiting to be sent, by target."),
        ("calltracking_export_failed", "Exports given up (state failed), by target."),
        ("calltracking_export_lag_seconds", "Age of the oldest waiting export, by target."),
    )
    pending, failed, lag = (GaugeMetricFamily(n, h, labels=["target"]) for n, h in names)
    for target, queue in g.exports.items():
        pending.add_metric([target], float(queue.pending))
        failed.add_metric([target], float(queue.failed))
        lag.add_metric([target], queue.oldest_pending_s)
    yield from (pending, failed, lag)


def _safe(read: Reader) -> float:
    try:
        return float(read())
    except Exception:
        log.exception("metrics: a live figure could not be read")
        return float("nan")

"""What the composition root hands to the adapters: one object with the shared parts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import InitVar, dataclass, field
from datetime import UTC, datetime

from calltracking.bus.base import Bus
from calltracking.bus.memory import MemoryBus
from calltracking.bus.wake import Wake
from calltracking.config import Config
from calltracking.core.events import Event
from calltracking.metrics import Metrics
from calltracking.store.calls import SqlCallRecorder
from calltracking.store.db import Database
from calltracking.store.deciders import DeciderService
from calltracking.store.outbox_watch import watch_commits
from calltracking.store.webhook_sites import WebhookSites


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Health:
    """Each running part reports here; /healthz shows it, /metrics as `calltracking_part_up`."""

    parts: dict[str, Callable[[], bool]] = field(default_factory=dict)
    # metric name -> {outcome -> count}, exported as counters `calltracking_<name>{outcome}`
    counters: dict[str, Callable[[], dict[str, float]]] = field(default_factory=dict)

    def report(self) -> dict[str, bool]:
        states = {}
        for name, probe in self.parts.items():
            try:
                states[name] = bool(probe())
            except Exception:
                states[name] = False
        return states


@dataclass(frozen=True)
class DemoHooks:
    """Set by `calltracking demo`: the demo site and a way to place a simulated call."""

    site_key: str
    place_call: Callable[[str], Awaitable[str]]


@dataclass
class Services:
    config: Config
    db: Database
    bus: Bus
    node_id: str
    clock: Callable[[], datetime] = utc_now
    health: Health = field(default_factory=Health)
    signing_key: bytes = b""
    sweep_interval_s: float = 0.5
    demo: DemoHooks | None = None
    # What the webhook dispatcher asks of events; serve.py shares it with the bus's route to the
    # webhook queue (one cache of the sites per process).
    webhook_sites: WebhookSites = field(init=False)
    shared_webhook_sites: InitVar[WebhookSites | None] = None

    def __post_init__(self, shared_webhook_sites: WebhookSites | None) -> None:
        self.webhook_sites = shared_webhook_sites or WebhookSites(self.db)
        # Background loops sleep until woken (calltracking/bus/wake.py): `outbox_wake` when
        # outbox rows were committed (here, or on another node via PostgreSQL NOTIFY),
        # `due_wake` when a visitor batch may have moved the sweeper's next due time.
        self.outbox_wake = Wake()
        self.due_wake = Wake()
        watch_commits(self.db, self.outbox_written)
        self.visitors = DeciderService(self.db, self.node_id, self.config.country_code)
        self.visitors.committed = self.due_wake.notify
        self.visitors.outbox_committed = self.outbox_written
        self.recorder = SqlCallRecorder(self.db)
        self.metrics = Metrics(self.health.report, self.health.counters)

    @property
    def unwanted_event(self) -> Callable[[Event], bool] | None:
        """With the in-process bus, whether no consumer would take an event now: it may then be
        written published (store/outbox.py, "Settled rows"). With a broker, consumers outside
        this process may want any event: None."""
        bus = self.bus
        if isinstance(bus, MemoryBus):
            return lambda event: not bus.wanted(event)
        return None

    def outbox_written(self) -> None:
        """Outbox rows were committed: wake the relay and the exporters. Called for every
        commit through `db` already (store/outbox_watch.py); calling it again is harmless."""
        self.outbox_wake.notify()

"""The composition root: builds the shared parts once and runs the chosen parts of the tracker
in one asyncio process until cancelled.

Parts: `web` (HTTP, websockets, snippet, API, pages; it also sweeps due lease times, and relays
the outbox while no process with the workers part runs, since visitors' tabs depend on both),
`agi` (FastAGI), `ami` (the AMI listener, when an AMI host is configured) and `workers` (outbox
relay, analytics exporters). A subset of parts needs RabbitMQ: the in-process bus cannot span
processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import socket
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from calltracking.bus.base import Bus
from calltracking.bus.memory import MemoryBus
from calltracking.bus.relay import OutboxRelay
from calltracking.config import Config, ConfigError
from calltracking.heap import release_lost_transports, settle_after_startup
from calltracking.services import Services
from calltracking.store.db import Database
from calltracking.store.migrate import migrate
from calltracking.store.outbox import SqlOutbox
from calltracking.store.webhook_sites import WebhookSites
from calltracking.workers import webhooks

log = logging.getLogger(__name__)
ALL_PARTS = ("web", "agi", "ami", "workers")
RELAY_INTERVAL_S = 0.2  # at most one relay round per this, under load
IDLE_FALLBACK_S = 30.0  # loops woken by events still look this often, in case one was missed
RETENTION_INTERVAL_S = 3600.0
STOP_GRACE_S = 5.0
AGI_DRAIN_S = 2.0  # longer than any dialogue's budget
FLUSH_TIMEOUT_S = 5.0
RELAY_BATCH = 500  # events per round: under load a round is one read and one write for many
# Events a relay sends to RabbitMQ before awaiting their confirms (bus/relay.py); the in-process
# bus never waits, so there one at a time costs least.
RELAY_IN_FLIGHT = 64


def parse_parts(only: str | None, config: Config) -> frozenset[str]:
    if not only:
        return frozenset(ALL_PARTS)
    parts = frozenset(p.strip() for p in only.split(",") if p.strip())
    unknown = parts - set(ALL_PARTS)
    if unknown:
        raise ConfigError(
            f"--only: unknown part(s) {', '.join(sorted(unknown))}; "
            f"choose from {', '.join(ALL_PARTS)}"
        )
    if parts != set(ALL_PARTS) and not config.amqp_url:
        raise ConfigError(
            "--only needs CALLTRACKING_AMQP_URL: the in-process bus cannot span processes"
        )
    return parts


async def open_bus(config: Config, webhook_sites: WebhookSites) -> Bus:
    if not config.amqp_url:
        return MemoryBus()
    from calltracking.bus.rabbit import QueueRoute, RabbitBus

    # Every process that may relay copies to the webhook queue only what a webhook may want
    # (bus/rabbit.py, "Routed queues"), so the broker stores no lease event of a site without one.
    to_webhooks = QueueRoute(webhooks.QUEUE, webhooks.KEYS, webhook_sites.wants)
    bus = RabbitBus(
        config.amqp_url, name=f"calltracking-{socket.gethostname()}", routes=[to_webhooks]
    )
    await bus.start()
    return bus


@dataclass
class Running:
    services: Services
    http_port: int | None = None
    agi_port: int | None = None


@asynccontextmanager
async def running(
    config: Config,
    parts: Collection[str] = ALL_PARTS,
    *,
    tweak: Callable[[Services], None] | None = None,
) -> AsyncIterator[Running]:
    """Start the chosen parts; yields once they listen, stops them on exit."""
    release_lost_transports()  # before the first socket: every closed one is freed at once
    async with AsyncExitStack() as stack:
        db = Database(config.database_url)
        stack.push_async_callback(db.close)
        await migrate(db)
        webhook_sites = WebhookSites(db)
        bus = await open_bus(config, webhook_sites)
        stack.push_async_callback(bus.close)
        services = Services(
            config=config,
            db=db,
            bus=bus,
            shared_webhook_sites=webhook_sites,
            node_id=f"{socket.gethostname()}-{secrets.token_hex(4)}",
            signing_key=(config.signing_key.encode() or secrets.token_bytes(32)),
        )
        if tweak is not None:
            tweak(services)
        state = Running(services)
        tasks: list[asyncio.Task[None]] = []

        stopping = asyncio.Event()

        async def cancel_tasks() -> None:
            # Loops that watch `stopping` finish their round (no database call cut in half);
            # the rest are cancelled.
            stopping.set()
            if tasks:
                await asyncio.wait(tasks, timeout=STOP_GRACE_S)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

        if "web" in parts or "workers" in parts:
            # Runs after the tasks stopped and the tabs closed: their last events leave now.
            stack.push_async_callback(_flush_outbox, services)
        if "web" in parts and config.amqp_url:
            # Several web nodes: each site is decided by the owner of its shard. Closed after
            # the last batches committed, so forwarded changes still get their answers.
            await _decide_by_owner(stack, services, config.amqp_url)
        # After the sockets closed and before the flush: queued lifecycle batches commit.
        stack.push_async_callback(services.visitors.close)
        stack.push_async_callback(cancel_tasks)
        if "web" in parts or "workers" in parts:
            relay = _relay(services, stopping, preferred="workers" in parts)
            tasks.append(asyncio.create_task(relay, name="outbox-relay"))
            if not db.is_sqlite:  # rows committed by other processes wake this one
                from calltracking.store.outbox_watch import listen_outbox

                listener = listen_outbox(config.database_url, services.outbox_written, stopping)
                tasks.append(asyncio.create_task(listener, name="outbox-listener"))
        if "web" in parts:
            from web.access_log import RedactingAccessLogger
            from web.app import create_app
            from web.limits import LimitedSite, body_deadline, guard_accept_errors, http_limits

            limits = http_limits(config)
            app = create_app(services)
            app.middlewares.append(body_deadline(limits.body_timeout_s))
            runner = web.AppRunner(
                app,
                shutdown_timeout=5,
                keepalive_timeout=limits.header_timeout_s,
                access_log_class=RedactingAccessLogger,
            )
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            stack.callback(guard_accept_errors(asyncio.get_running_loop()))
            site = LimitedSite(runner, limits, config.http_host, config.http_port)
            await site.start()
            state.http_port = _bound_port(runner)
            log.info("web listening on http://%s:%s", config.http_host, state.http_port)
        if "agi" in parts:
            from agi.server import AgiServer
            from calltracking.core.netpolicy import parse_networks
            from calltracking.store.call_batches import CallStartBatcher

            # Call starts in group commits; closed after the server stopped (LIFO stack).
            starts = CallStartBatcher(
                services.db,
                services.recorder,
                committed=services.outbox_written,
                unwanted=services.unwanted_event,
            )
            stack.push_async_callback(starts.close)
            agi = AgiServer(
                starts,
                config.pbx_id,
                config.country_code,
                config.agi_host,
                config.agi_port,
                allow=parse_networks(config.agi_allow),
            )
            await agi.start()
            # In-flight dialogues finish (each is bounded by its budget) before the rest stops.
            stack.push_async_callback(agi.stop, AGI_DRAIN_S)
            agi.observe_dialogue = services.metrics.agi_dialogue_done
            state.agi_port = agi.port
            services.health.parts["agi"] = lambda: agi.health
            services.health.counters["agi_dialogues_total"] = lambda: {
                str(outcome): float(n) for outcome, n in agi.counters().items()
            }
            log.info("FastAGI listening on %s:%s", config.agi_host, agi.port)
        if "ami" in parts and config.ami_host:
            tasks.append(asyncio.create_task(_ami(services), name="ami-listener"))
        if "workers" in parts:
            tasks.append(asyncio.create_task(_retention(services), name="retention"))
            with contextlib.suppress(ImportError):
                from calltracking.workers import run_exporters

                tasks.append(asyncio.create_task(run_exporters(services), name="exporters"))
        if "web" not in parts and config.metrics_port:
            await _serve_ops(stack, services, config)
        yield state


async def _decide_by_owner(stack: AsyncExitStack, services: Services, amqp_url: str) -> None:
    from calltracking.cluster.rabbit import RabbitOwners

    owners = RabbitOwners(amqp_url, services.node_id, services.visitors.serve)
    await owners.start()
    stack.push_async_callback(owners.close)
    services.visitors.use_owners(owners)
    services.health.counters["forwarding_total"] = lambda: {
        **{outcome: float(n) for outcome, n in owners.counts.items()},
        "decided_here_after_no_answer": float(services.visitors.fallbacks),
    }


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    raise RuntimeError("web server is not bound")


async def _relay(services: Services, stopping: asyncio.Event, *, preferred: bool = True) -> None:
    """One relay per database: on PostgreSQL the processes that could relay take turns by a
    lock (store/leadership.py), or each would publish every event (consumers deduplicate, but
    every copy costs the broker and each consumer). The active one is woken by the others'
    commits through PostgreSQL's NOTIFY (store/outbox_watch.py). A process with the workers
    part is `preferred`; web nodes without it relay only while no such process runs, as their
    loop serves sockets (a relay was a fifth of a busy web node's CPU: docs/benchmarks.md)."""
    from calltracking.store.leadership import RELAY_JOB, Leadership, Standing

    outbox = SqlOutbox(services.db, inline=True)
    relay = _relay_of(outbox, services)
    wake = services.outbox_wake.subscribe()
    standing = Standing.PREFERRED if preferred else Standing.FALLBACK
    leadership = Leadership(
        services.config.database_url, RELAY_JOB, "outbox relay", standing=standing
    )
    services.metrics.read_gauge(
        "calltracking_outbox_relaying",
        "1 while this process relays the outbox (one process per database does).",
        lambda: float(leadership.active),
    )

    async def work() -> None:
        await relay.run(RELAY_INTERVAL_S, stopping, wake, IDLE_FALLBACK_S)

    try:
        await leadership.run(work, until=stopping)
    finally:
        outbox.close()


async def _flush_outbox(services: Services) -> None:
    """On the way out: publish what is pending, a bounded number of rounds, unless another
    process is relaying (on PostgreSQL: it holds the relay's lock), which then publishes it:
    two relays would publish every pending event twice."""
    from calltracking.store.leadership import RELAY_JOB, Leadership

    relay = _relay_of(SqlOutbox(services.db), services)

    async def flush() -> None:
        while await relay.run_once() >= RELAY_BATCH:
            pass

    leadership = Leadership(services.config.database_url, RELAY_JOB, "outbox flush")
    try:
        async with asyncio.timeout(FLUSH_TIMEOUT_S):
            if not await leadership.run_if_free(flush):
                log.info("outbox flush at shutdown: another process relays; left to it")
    except TimeoutError:
        log.warning(
            "outbox flush at shutdown: events still pending after %.0f s; the next start"
            " publishes them",
            FLUSH_TIMEOUT_S,
        )
    except Exception:
        log.exception("outbox flush at shutdown failed; the next start publishes the rest")


def _relay_of(outbox: SqlOutbox, services: Services) -> OutboxRelay:
    in_flight = RELAY_IN_FLIGHT if services.config.amqp_url else 1
    return OutboxRelay(outbox, services.bus, batch=RELAY_BATCH, in_flight=in_flight)


async def _serve_ops(stack: AsyncExitStack, services: Services, config: Config) -> None:
    """/healthz, /livez and /metrics for a process without the web part (agi, ami, workers)."""
    from web.app import create_ops_app

    runner = web.AppRunner(create_ops_app(services))
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.TCPSite(runner, config.http_host, config.metrics_port).start()
    log.info("health and metrics on http://%s:%s", config.http_host, _bound_port(runner))


async def _retention(services: Services) -> None:
    """Delete calls, recordings and visits past each account's retention, hourly."""
    from calltracking.store.retention import purge_expired

    config = services.config
    while True:
        try:
            await purge_expired(
                services.db, config.recordings_dir, config.asterisk_monitor_dir, services.clock()
            )
        except Exception:
            log.exception("retention run failed; next try in an hour")
        await asyncio.sleep(RETENTION_INTERVAL_S)


async def _ami(services: Services) -> None:
    from ami_listener.listener import AmiListener
    from calltracking.store.leadership import Leadership, ami_job

    config = services.config
    leadership = Leadership(config.database_url, ami_job(config.pbx_id), f"AMI {config.pbx_id}")
    current: list[AmiListener] = []
    ended_sessions = [0]  # AMI sessions of listeners whose term ended

    async def listen() -> None:
        # A fresh listener per term of office: it logs in and reconciles what the last holder
        # (this process or another one) followed.
        listener = AmiListener(
            host=config.ami_host,
            port=config.ami_port,
            username=config.ami_username,
            secret=config.ami_secret,
            pbx_id=config.pbx_id,
            trunk_contexts=config.trunk_contexts,
            country_code=config.country_code,
            recordings_dir=config.recordings_dir,
            asterisk_monitor_dir=config.asterisk_monitor_dir,
            stale_call_s=config.stale_call_s,
            recorder=services.recorder,
        )
        listener.observe_event = services.metrics.ami_event_done
        current[:] = [listener]
        try:
            await listener.run()
        finally:
            ended_sessions[0] += listener.health.sessions
            current.clear()

    # A standby (another process holds the PBX's lock) is healthy; the active one is when
    # logged in.
    services.health.parts["ami"] = lambda: (
        not leadership.active or bool(current and current[0].health.logged_in)
    )
    services.metrics.read_counter(
        "calltracking_ami_reconnects",
        "AMI sessions after the first (each one a reconnect).",
        lambda: max(0, ended_sessions[0] + sum(x.health.sessions for x in current) - 1),
    )
    await leadership.run(listen)


async def serve_forever(config: Config, parts: Collection[str]) -> None:
    """Run until SIGTERM or SIGINT, then stop every part cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with running(config, parts):
        settle_after_startup()
        await stop.wait()
        log.info("stopping")

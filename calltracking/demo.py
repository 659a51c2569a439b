"""`calltracking demo`: the whole product on one machine, for a newcomer's first five minutes.

It keeps SQLite and the recordings in a data folder, uses the in-process bus, seeds a demo
account and site (small pool, three default numbers, a short display delay), starts a simulated
Asterisk whose calls go through the tracker's real FastAGI and AMI listener, serves a landing page
carrying the snippet with a "call" button, and prints the URLs and the operator token.
Running it again reuses the data folder: the account and site are created only once.

Settings: every `CALLTRACKING_*` setting (or TOML entry) the user gave is honoured as `serve`
honours it; the demo's own choices (SQLite in the data folder, the in-process bus, port 8080, its
simulated Asterisk on a free port, recordings in the data folder) fill only the settings not
given, and the `--port` flag wins over both. The simulated Asterisk is the demo's PBX: it serves
AMI on `ami_host`/`ami_port` with `ami_username`/`ami_secret` and sends its calls in the first of
`trunk_contexts`, so the listener finds it wherever those settings point. A port already in use
is one line on stderr and exit status 1, before anything starts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import random
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from calltracking.config import Config
from calltracking.core.settings import SiteSettings
from calltracking.pbxsim.call_plan import Outcome
from calltracking.pbxsim.calls import CallSpec
from calltracking.pbxsim.sim import PbxSim, SimConfig
from calltracking.serve import ALL_PARTS, running
from calltracking.services import DemoHooks, Services
from calltracking.store.db import Database
from calltracking.store.migrate import migrate
from calltracking.store.schema import accounts, sites
from calltracking.store.sites import add_to_reserve, create_account, create_site
from calltracking.store.tokens import create_token

log = logging.getLogger(__name__)
DEMO_SITE_NAME = "Demo shop"
DEMO_NUMBERS = [f"+7495111{n:04d}" for n in range(1, 11)]
DEMO_DEFAULTS = {"initial": "+74957770001", "expired": "+74957770002", "untracked": "+74957770003"}
AMI_USER, AMI_SECRET = "calltracking", "calltracking-demo"
DEMO_PORT = 8080
# Room for the demo site (pool 5, 3 defaults) and a second site created with default settings
# (pool_max 20 and its 3 defaults): a newcomer's first "create a site" must not answer 422.
DEMO_MAX_NUMBERS = 50


def demo_config(
    base: Config,
    *,
    data: Path,
    port: int | None = None,
    given: frozenset[str] = frozenset(),
) -> Config:
    """The demo's own choices for the settings the user did not give; `port` (--port) wins.
    AGI and AMI ports not given are 0 here: `run_demo` puts the free ports it found."""
    recordings = (data / "recordings").resolve()
    own: dict[str, object] = {
        "database_url": f"sqlite+aiosqlite:///{(data / 'calltracking.db').resolve()}",
        "amqp_url": "",
        "http_port": DEMO_PORT,
        "agi_host": "127.0.0.1",
        "agi_port": 0,
        "ami_host": "127.0.0.1",
        "ami_port": 0,
        "ami_username": AMI_USER,
        "ami_secret": AMI_SECRET,
        "recordings_dir": recordings,
        "asterisk_monitor_dir": str(recordings),
        "trunk_contexts": ("from-trunk",),
    }
    chosen = {name: value for name, value in own.items() if name not in given}
    if port is not None:
        chosen["http_port"] = port
    return dataclasses.replace(base, **chosen)  # type: ignore[arg-type]  # names from Config


def port_in_use(host: str, port: int) -> bool:
    """True when something listens on (host, port); port 0 (any free one) is never in use."""
    if port == 0:
        return False
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's servers do
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _loopback_if_any(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


async def seed_demo(db: Database, now: datetime) -> tuple[str, str]:
    """Create the demo account and site once; returns (site key, a fresh account token)."""
    async with db.write() as conn:
        row = (
            await conn.execute(
                sa.select(sites.c.key, sites.c.account_id).where(
                    sites.c.name == DEMO_SITE_NAME, sites.c.deleted_at.is_(None)
                )
            )
        ).first()
        if row is None:
            account = await create_account(conn, "Demo", now, max_numbers=DEMO_MAX_NUMBERS)
            await add_to_reserve(conn, DEMO_NUMBERS, now)
            settings = dataclasses.replace(
                SiteSettings(), show_delay_s=3, idle_timeout_s=900, hold_s=1800, pool_max=5
            )
            site = await create_site(
                conn,
                account_id=account.id,
                name=DEMO_SITE_NAME,
                domains=("127.0.0.1", "localhost"),
                defaults=DEMO_DEFAULTS,
                settings=settings,
                now=now,
            )
            key, account_id = site.key, account.id
        else:
            key, account_id = row.key, row.account_id
            await conn.execute(  # a data folder from an older demo had max_numbers 10
                accounts.update()
                .where(accounts.c.id == account_id, accounts.c.max_numbers < DEMO_MAX_NUMBERS)
                .values(max_numbers=DEMO_MAX_NUMBERS)
            )
        token = await create_token(conn, admin=False, account_id=account_id, now=now)
    return key, token


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, slots=True)
class DemoInfo:
    """What the newcomer is told: where to look and how to sign in."""

    base_url: str
    token: str
    site_key: str


async def run_demo(
    base: Config,
    *,
    port: int | None,
    data: Path,
    given: frozenset[str] = frozenset(),
    ready: Callable[[DemoInfo], None] | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    config = demo_config(base, data=data, port=port, given=given)
    if config.agi_port == 0:
        config = dataclasses.replace(config, agi_port=_free_port())
    for host, bound in ((config.http_host, config.http_port), (config.agi_host, config.agi_port)):
        if port_in_use(host, bound):
            print(
                f"calltracking demo: port {bound} on {host} is already in use; stop what holds "
                "it, or pick another with --port N (or CALLTRACKING_HTTP_PORT / _AGI_PORT)",
                file=sys.stderr,
            )
            return 1
    try:
        return await _run(config, data, ready, stop)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        print(f"calltracking demo: {exc.strerror or exc}", file=sys.stderr)
        return 1


async def _run(
    config: Config,
    data: Path,
    ready: Callable[[DemoInfo], None] | None,
    stop: asyncio.Event | None,
) -> int:
    data.mkdir(parents=True, exist_ok=True)
    config.recordings_dir.mkdir(parents=True, exist_ok=True)
    sim = PbxSim(
        SimConfig(
            host=config.ami_host,
            port=config.ami_port,
            username=config.ami_username,
            secret=config.ami_secret,
            context=config.trunk_contexts[0],
            agi=(_loopback_if_any(config.agi_host), config.agi_port),
            monitor_dir=config.recordings_dir,
            asterisk_monitor_dir=config.asterisk_monitor_dir,
        )
    )
    await sim.start()
    try:
        config = dataclasses.replace(config, ami_port=sim.ami_port)
        db = Database(config.database_url)
        try:
            await migrate(db)
            site_key, token = await seed_demo(db, datetime.now(UTC))
        finally:
            await db.close()

        async def place_call(e164: str) -> str:
            caller = "+7916" + "".join(random.choices("0123456789", k=7))
            placed = await sim.place_call(
                CallSpec(did=e164.lstrip("+"), caller=caller, outcome=Outcome.ANSWERED, talk_s=4.0)
            )
            return placed.linkedid

        def hooks(services: Services) -> None:
            services.demo = DemoHooks(site_key=site_key, place_call=place_call)

        async with running(config, ALL_PARTS, tweak=hooks) as state:
            base_url = f"http://{config.http_host}:{state.http_port}"
            print(
                "\ncalltracking demo is running\n"
                f"  landing page  {base_url}/demo/?utm_source=newsletter&utm_medium=email"
                "&utm_campaign=demo\n"
                f"  dashboard     {base_url}/dashboard/\n"
                f"  operator token {token}\n"
                f"  data folder   {data.resolve()}\n"
                'Open the landing page, wait for the number to change, press "call", then\n'
                "sign in to the dashboard with the token. Ctrl+C stops.\n",
                flush=True,
            )
            if ready is not None:
                ready(DemoInfo(base_url, token, site_key))
            await _wait(stop)
    finally:
        await sim.stop()
    return 0


async def _wait(stop: asyncio.Event | None) -> None:
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    await stop.wait()

"""`calltracking demo`: the whole product on one machine, for a newcomer's first five minutes.

It keeps SQLite and the recordings in a data folder, uses the in-process bus, seeds a demo
account and site (small pool, three default numbers, a short display delay), starts a simulated
Asterisk whose calls go through the tracker's real FastAGI and AMI listener, serves a landing page
carrying the snippet with a "call" button, and prints the URLs and the operator token.
Running it again reuses the data folder: the account and site are created only once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import signal
import socket
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
from calltracking.store.schema import sites
from calltracking.store.sites import add_to_reserve, create_account, create_site
from calltracking.store.tokens import create_token

log = logging.getLogger(__name__)
DEMO_SITE_NAME = "Demo shop"
DEMO_NUMBERS = [f"+7495111{n:04d}" for n in range(1, 11)]
DEMO_DEFAULTS = {"initial": "+74957770001", "expired": "+74957770002", "untracked": "+74957770003"}
AMI_USER, AMI_SECRET = "calltracking", "calltracking-demo"


def demo_config(base: Config, port: int, data: Path, agi_port: int, ami_port: int) -> Config:
    recordings = (data / "recordings").resolve()
    return dataclasses.replace(
        base,
        database_url=f"sqlite+aiosqlite:///{(data / 'calltracking.db').resolve()}",
        amqp_url="",
        http_port=port,
        agi_host="127.0.0.1",
        agi_port=agi_port,
        ami_host="127.0.0.1",
        ami_port=ami_port,
        ami_username=AMI_USER,
        ami_secret=AMI_SECRET,
        recordings_dir=recordings,
        asterisk_monitor_dir=str(recordings),
        trunk_contexts=("from-trunk",),
    )


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
            account = await create_account(conn, "Demo", now, max_numbers=10)
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
    port: int,
    data: Path,
    ready: Callable[[DemoInfo], None] | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    data.mkdir(parents=True, exist_ok=True)
    (data / "recordings").mkdir(exist_ok=True)
    agi_port = _free_port()
    sim = PbxSim(
        SimConfig(
            port=0,
            username=AMI_USER,
            secret=AMI_SECRET,
            agi=("127.0.0.1", agi_port),
            monitor_dir=(data / "recordings").resolve(),
        )
    )
    await sim.start()
    try:
        config = demo_config(base, port, data, agi_port, sim.ami_port)
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

"""The real tracker (`serve.running`, web part only) on a per-test SQLite file, and a client.

Calls are seeded through the store's `SqlCallRecorder`, as the AGI and the AMI listener report
them; accounts, numbers and sites through the API itself.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from calltracking.config import Config
from calltracking.core.kinds import CallStatus
from calltracking.core.records import CallKey
from calltracking.serve import running
from calltracking.services import Services
from tests.support.fixtures import ASTERISK

ADMIN = "admin-secret"
MONITOR = "/var/spool/asterisk/monitor"
FIXTURE_WAV = ASTERISK / "recording_example.wav"
T0 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)


def numbers(count: int, start: int = 1, prefix: str = "+7495111") -> list[str]:
    return [f"{prefix}{n:04d}" for n in range(start, start + count)]


def defaults(base: int) -> dict[str, str]:
    return {
        "initial": f"+7495000{base + 1:04d}",
        "expired": f"+7495000{base + 2:04d}",
        "untracked": f"+7495000{base + 3:04d}",
    }


@dataclass
class Api:
    session: aiohttp.ClientSession
    base: str
    services: Services
    recordings: Path
    linkedids: int = 0

    async def req(
        self, method: str, path: str, token: str | None = ADMIN, **kwargs: Any
    ) -> tuple[int, Any]:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        url = path if path.startswith("http") else self.base + path
        async with self.session.request(method, url, headers=headers, **kwargs) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.read()

    async def ok(self, method: str, path: str, token: str | None = ADMIN, **kw: Any) -> Any:
        status, body = await self.req(method, path, token, **kw)
        assert status in (200, 201), (status, body)
        return body

    async def account(self, name: str = "acme", **extra: Any) -> tuple[str, str]:
        body = await self.ok("POST", "/api/v1/accounts", json={"name": name, **extra})
        return body["id"], body["token"]

    async def site(
        self, token: str, base: int = 9000, name: str = "shop", **settings: Any
    ) -> dict[str, Any]:
        body = {
            "name": name,
            "domains": ["shop.example"],
            "defaults": defaults(base),
            "settings": settings,
        }
        result: dict[str, Any] = await self.ok("POST", "/api/v1/sites", token, json=body)
        return result

    async def call(
        self,
        did: str,
        caller: str | None,
        at: datetime,
        *,
        status: CallStatus = CallStatus.ANSWERED,
        recording: str | None = None,
        size: int | None = None,
    ) -> str:
        """A whole call as the PBX reports it; returns the call id."""
        self.linkedids += 1
        key = CallKey("asterisk", f"1700000000.{self.linkedids}")
        recorder = self.services.recorder
        resolution = await recorder.start_call(key, did, caller, at)
        if status is CallStatus.ANSWERED:
            await recorder.answer_call(key, at + timedelta(seconds=5), "PJSIP/101")
        await recorder.end_call(key, at + timedelta(seconds=65), status)
        if recording is not None:
            await recorder.name_recording(key, recording)
            await recorder.confirm_recording(key, size if size is not None else 1000)
        return resolution.call_id

    def put_recording(self, relative: str) -> Path:
        target = self.recordings / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FIXTURE_WAV, target)
        return target


@asynccontextmanager
async def serving(
    tmp_path: Path,
    tweak: Callable[[Services], None] | None = None,
    database_url: str | None = None,
) -> AsyncIterator[Api]:
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    config = Config(
        database_url=database_url or f"sqlite+aiosqlite:///{tmp_path / 'api.db'}",
        http_port=0,
        admin_token=ADMIN,
        recordings_dir=recordings,
        asterisk_monitor_dir=MONITOR,
    )
    async with running(config, ["web"], tweak=tweak) as state, aiohttp.ClientSession() as session:
        yield Api(session, f"http://127.0.0.1:{state.http_port}", state.services, recordings)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with serving(tmp_path) as client:
        yield client


def _no_sweeping(services: Services) -> None:
    services.sweep_interval_s = 3600.0


@pytest.fixture
async def quiet_api(tmp_path: Path) -> AsyncIterator[Api]:
    """The tracker whose lease sweeper runs only at start: visitors seeded in the past keep their
    leases (the sweeper would close their tabs as vanished, at today's time)."""
    async with serving(tmp_path, _no_sweeping) as client:
        yield client


async def visitor(api: Api, site_id: str, at: datetime, url: str) -> str:
    """A visitor arrives at `at` from `url`; returns the number they are shown."""
    from calltracking.store.sites import get_site
    from calltracking.store.visitors import Hello
    from tests.store.seed import DESKTOP_UA

    async with api.services.db.read() as conn:
        site = await get_site(conn, site_id)
    assert site is not None
    hello = Hello(url=url, referrer="", user_agent=DESKTOP_UA)
    welcome = await api.services.visitors.hello(site, hello, at)
    return welcome.shown.e164


async def clean_postgres(pg_url: str) -> str:
    """Empty the session's PostgreSQL database (the tracker migrates it on start)."""
    import sqlalchemy as sa

    from calltracking.store.db import Database

    db = Database(pg_url)
    async with db.engine.begin() as conn:
        await conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        await conn.execute(sa.text("CREATE SCHEMA public"))
    await db.close()
    return pg_url


@pytest.fixture
async def pg_api(tmp_path: Path, pg_url: str) -> AsyncIterator[Api]:
    """The tracker on a clean schema of the session's PostgreSQL database."""
    async with serving(tmp_path, database_url=await clean_postgres(pg_url)) as client:
        yield client


@pytest.fixture(params=["sqlite", "postgres"])
async def any_api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    """The tracker on SQLite, then on PostgreSQL."""
    url = None
    if request.param == "postgres":
        url = await clean_postgres(request.getfixturevalue("pg_url"))
    async with serving(tmp_path, database_url=url) as client:
        yield client

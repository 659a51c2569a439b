"""Seed data for the dashboard's browser tests, written through the store as the PBX and the
visitor websocket would: an account with a token, a site, a visitor's dynamic number, calls
(through `SqlCallRecorder`, as the AGI and the AMI listener report them) and a recording file at
the path Asterisk would name, mapped into the configured `recordings_dir`.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath

from calltracking.core.events import Event
from calltracking.core.kinds import CallStatus, ExportState
from calltracking.core.records import CallKey
from calltracking.serve import Running
from calltracking.store import schema
from calltracking.store.sites import Site
from calltracking.store.tokens import create_token
from tests.store.seed import seed_site
from tests.support.fixtures import ASTERISK
from tests.web.harness import hello, open_tab, session

FIXTURE_WAV = ASTERISK / "recording_example.wav"
CAMPAIGN_URL = "https://shop.example/sofas?utm_source=google&utm_medium=cpc&utm_campaign=spring"
PBX_ID = "asterisk"
_linkedids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Account:
    site: Site
    token: str


async def seed_account(state: Running) -> Account:
    """An account owning one site (shop.example) and an account token for it."""
    db = state.services.db
    site = await seed_site(db)
    async with db.write() as conn:
        token = await create_token(
            conn, admin=False, account_id=site.account_id, now=datetime.now(UTC)
        )
    return Account(site, token)


async def dynamic_number(state: Running, site: Site, url: str = CAMPAIGN_URL) -> str:
    """A visitor arrives from `url` and is given a dynamic number; the tab then closes, and this
    returns once the server has released the lease (the bus says `lease.released`), so a call to
    the number next is attributed `held`, never racing the close."""
    released = asyncio.Event()

    async def on_release(event: Event) -> None:
        if event.data.get("site_id") == site.id:
            released.set()

    bus = state.services.bus
    subscription = await bus.subscribe(None, ["lease.released"], on_release, durable=False)
    try:
        async with session() as http:
            tab = await open_tab(http, state)
            await hello(tab, site, url=url)
            frame = await tab.until_kind("dynamic")
            await tab.ws.close()
        await asyncio.wait_for(released.wait(), timeout=5)
    finally:
        await subscription.close()
    e164: str = frame["e164"]
    return e164


async def seed_call(
    state: Running,
    did: str,
    caller: str | None,
    *,
    status: CallStatus = CallStatus.ANSWERED,
    recording: bool = False,
    ago_s: float = 120.0,
) -> str:
    """One whole call that began `ago_s` ago; with `recording`, the fixture WAV is its file.

    A call to a dynamic number must begin after its lease did (attribution is decided at the
    call's start), so such calls take `ago_s=0`.
    """
    recorder = state.services.recorder
    config = state.services.config
    key = CallKey(PBX_ID, f"1764000000.{next(_linkedids)}")
    started = datetime.now(UTC) - timedelta(seconds=ago_s)
    resolution = await recorder.start_call(key, did, caller, started)
    if status is CallStatus.ANSWERED:
        await recorder.answer_call(key, started + timedelta(seconds=4), "PJSIP/101")
    await recorder.end_call(key, started + timedelta(seconds=36), status)
    if recording:
        name = f"{key.linkedid}.wav"
        target = Path(config.recordings_dir) / "2026" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FIXTURE_WAV, target)
        asterisk = PurePosixPath(config.asterisk_monitor_dir) / "2026" / name
        await recorder.name_recording(key, str(asterisk))
        await recorder.confirm_recording(key, target.stat().st_size)
    return resolution.call_id


async def fail_export(state: Running, call_id: str, target: str) -> None:
    """Mark one export failed, as the exporter does when a target refused it for good."""
    async with state.services.db.write() as conn:
        await conn.execute(
            schema.exports.update()
            .where(schema.exports.c.call_id == call_id, schema.exports.c.target == target)
            .values(state=str(ExportState.FAILED), last_error="400 from the target")
        )

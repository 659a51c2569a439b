"""A call that started while no listener was connected and is up, in `operators`, when one
connects: the real listener finds it in CoreShowChannels, reads its DID and recording with
Getvar, and the real store keeps it once, answered, with its recording confirmed. The PBX is the
simulated Asterisk in the shipped dialplan's shape (the trunk channel owns its Linkedid and has
left the trunk context)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

from calltracking.pbxsim import CallSpec, PbxSim, SimConfig
from calltracking.store.calls import SqlCallRecorder
from calltracking.store.db import Database
from tests.ami.test_listener import running
from tests.integration.pbx import (
    BOTH_DATABASES,
    MONITOR,
    PBX,
    TIMINGS,
    call_rows,
    listener,
    stored,
    until,
)
from tests.store.seed import seed_site

pytestmark = BOTH_DATABASES


def real_clock() -> datetime:
    return datetime.now(UTC)


async def test_a_call_found_in_operators_at_connect_is_stored_once_answered_and_recorded(
    any_db: Database, tmp_path: Path
) -> None:
    site = await seed_site(any_db, reserve=2)
    did = next(iter(site.defaults.values()))
    recordings = tmp_path / "recordings"
    sim = PbxSim(SimConfig(
        port=0, speed=10, username="tracker", secret="tracker", route_context="operators",
        monitor_dir=recordings, asterisk_monitor_dir=MONITOR, late_close_s=0.5,
    ))  # fmt: skip
    await sim.start()
    try:
        placed = await sim.place_call(CallSpec(did.removeprefix("+"), "+79161234567", talk_s=30))
        await until(lambda: placed.state == "answered")
        # MixMonitor's file is written after the Hangup; on a busy machine that can take a while.
        patient = dataclasses.replace(TIMINGS, recording_wait_s=30)
        recorder = SqlCallRecorder(any_db)
        ami = listener(sim.ami_port, recorder, recordings, real_clock, timings=patient)
        async with running(ami):
            rows = await stored(any_db, lambda r: len(r) == 1 and r[0].answered_at is not None)
            assert rows[0].ended_at is None  # found while it is up
            await placed.finished
            rows = await stored(any_db, lambda r: r[0].recording_size is not None, within_s=30)
    finally:
        await sim.stop()
    rows = await call_rows(any_db)
    assert len(rows) == 1
    call = rows[0]
    assert (call.pbx_id, call.linkedid, call.did) == (PBX, placed.linkedid, did)
    assert (call.status, call.answered_by, call.reconciled) == ("answered", "PJSIP/operator", False)
    assert call.recording_path == f"{MONITOR}/{placed.uniqueid}.wav"
    assert call.recording_size > 44
    # CoreShowChannels counts whole seconds: a call younger than one starts when it was found.
    assert call.started_at <= call.answered_at < call.ended_at

"""The AGI and the AMI listener report the same call: one row per (PBX id, Linkedid), whichever
reports first and however they interleave, with the attribution frozen at the first report.

The FastAGI capture is played against the real AgiServer with the Linkedid the AMI capture uses;
the AMI capture is replayed to the real listener, already logged in (its transcript held back
until the test lets it go); both report to SqlCallRecorder on the same database. Between the two
reports of the ordered cases the visitor closes the tab, so the second report would resolve
`held`: the stored call and the second reporter keep the first report's `dynamic`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from calltracking.core.attribution import attribute
from calltracking.core.kinds import AttributionKind, CallStatus
from calltracking.store import schema as t
from calltracking.store.calls import number_facts
from calltracking.store.db import Database
from tests.ami.transcripts import load
from tests.integration.pbx import (
    BOTH_DATABASES,
    OPERATOR,
    PBX,
    GatedSession,
    Scene,
    StepClock,
    agi_call,
    agi_server,
    ami,
    ami_transcript,
    call_events,
    epoch_of,
    linkedid_of,
    seed_scene,
    stored,
)

pytestmark = BOTH_DATABASES

ROUTE = "sales@operators"
# capture: how the call ends (the AGI of the second one ran while the caller hung up)
CAPTURES = {"answered_call": CallStatus.ANSWERED, "caller_hangs_up_during_agi": CallStatus.MISSED}


def captured_did(name: str) -> str:
    return "+" + next(m["Exten"] for m in load(name).events if m.get("Event") == "Newchannel")


def ended(rows: list[Any]) -> bool:
    return bool(rows) and all(r.ended_at is not None for r in rows)


async def kind_if_first_now(db: Database, did: str, at: datetime) -> AttributionKind:
    """What a call to `did` first seen at `at` would be attributed: the frozen kind's rival."""
    async with db.read() as conn:
        facts, _ = await number_facts(conn, did, at)
    return attribute(facts, at).kind


async def expected_variables(db: Database, row: Any) -> dict[str, str]:
    """The CALLTRACKING_* variables the stored call stands for: source/medium/campaign of its
    visit, route and record flag as stored from the site's settings."""
    async with db.read() as conn:
        visit = (await conn.execute(sa.select(t.visits).where(t.visits.c.id == row.visit_id))).one()
    return {
        "CALLTRACKING_SITE": row.site_id,
        "CALLTRACKING_SOURCE": visit.source,
        "CALLTRACKING_MEDIUM": visit.medium,
        "CALLTRACKING_CAMPAIGN": visit.campaign,
        "CALLTRACKING_LABEL": f"{visit.source}/{visit.medium}",
        "CALLTRACKING_ROUTE": row.route,
        "CALLTRACKING_RECORD": "1" if row.record else "0",
        "CALLTRACKING_KIND": row.kind,
    }


async def check_one_call(
    db: Database,
    scene: Scene,
    name: str,
    variables: list[dict[str, str]],
    lease_end: datetime | None = None,
) -> None:
    rows = await stored(db, ended)
    assert len(rows) == 1
    [row] = rows
    if lease_end is not None:  # started when first reported, before the lease ended
        assert scene.hello_at < row.started_at < lease_end
    assert (row.pbx_id, row.linkedid) == (PBX, linkedid_of(name))
    assert (row.did, row.kind, row.confidence) == (scene.leased, "dynamic", 1.0)
    assert (row.lease_id, row.visitor_id, row.visit_id) == (
        await scene.lease_id(),
        scene.welcome.visitor_id,
        scene.welcome.visit_id,
    )
    status = CAPTURES[name]
    assert (row.status, row.answered_by) == (
        status,
        OPERATOR if status is CallStatus.ANSWERED else None,
    )
    assert (row.site_id, row.route, row.record) == (scene.site.id, ROUTE, False)
    expected = await expected_variables(db, row)
    assert (expected["CALLTRACKING_LABEL"], expected["CALLTRACKING_CAMPAIGN"]) == (
        "yandex/cpc",
        "spring",
    )
    for got in variables:
        assert got == expected
    events = Counter(key for key, call_id in await call_events(db) if call_id == row.id)
    expected_events = {"call.started": 1, "call.ended": 1}
    if status is CallStatus.ANSWERED:
        expected_events["call.answered"] = 1
    assert events == expected_events


async def scene_for(db: Database, name: str) -> tuple[Scene, StepClock, dict[str, str]]:
    start = epoch_of(linkedid_of(name))
    scene = await seed_scene(db, start.replace(second=0), route=ROUTE, record_calls=False)
    return scene, StepClock(start), {captured_did(name): scene.leased}


@pytest.mark.parametrize("name", list(CAPTURES))
async def test_ami_first_then_agi(any_db: Database, tmp_path: Path, name: str) -> None:
    scene, clock, rewrite = await scene_for(any_db, name)
    linkedid = linkedid_of(name)
    session = GatedSession(stream=ami_transcript(name, rewrite))
    async with agi_server(any_db, clock) as agi, ami([session], any_db, tmp_path, clock):
        session.gate.set()
        await stored(any_db, ended)
        lease_end = clock.advance(1)
        await scene.close_tab(lease_end)
        late = clock.advance(5)
        assert await kind_if_first_now(any_db, scene.leased, late) is AttributionKind.HELD
        variables = await agi_call(agi, name, linkedid, rewrite)
    await check_one_call(any_db, scene, name, [variables], lease_end)


@pytest.mark.parametrize("name", list(CAPTURES))
async def test_agi_first_then_ami(any_db: Database, tmp_path: Path, name: str) -> None:
    scene, clock, rewrite = await scene_for(any_db, name)
    linkedid = linkedid_of(name)
    session = GatedSession(stream=ami_transcript(name, rewrite))
    async with agi_server(any_db, clock) as agi, ami([session], any_db, tmp_path, clock):
        variables = await agi_call(agi, name, linkedid, rewrite)
        [row] = await stored(any_db, bool)
        assert (row.kind, row.ended_at) == ("dynamic", None)
        lease_end = clock.advance(1)
        await scene.close_tab(lease_end)
        late = clock.advance(5)
        assert await kind_if_first_now(any_db, scene.leased, late) is AttributionKind.HELD
        session.gate.set()
        await stored(any_db, ended)
    await check_one_call(any_db, scene, name, [variables], lease_end)


@pytest.mark.parametrize("name", list(CAPTURES))
async def test_agi_and_ami_at_once(any_db: Database, tmp_path: Path, name: str) -> None:
    scene, clock, rewrite = await scene_for(any_db, name)
    linkedid = linkedid_of(name)
    session = GatedSession(stream=ami_transcript(name, rewrite))
    async with agi_server(any_db, clock) as agi, ami([session], any_db, tmp_path, clock):
        session.gate.set()
        # Asterisk retries nothing, but a second dialplan AGI() or a redirect may ask again.
        variables = await asyncio.gather(
            *(agi_call(agi, name, linkedid, rewrite) for _ in range(3))
        )
        await stored(any_db, ended)
    await check_one_call(any_db, scene, name, list(variables))

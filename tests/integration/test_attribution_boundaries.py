"""Attribution at its boundaries, through the whole path: a captured call reaches the real AgiServer
or the real AMI listener over TCP at an exact moment, and the real store resolves and keeps it.

The site holds a number for `hold_s` = 60 s and cools it down for 0.01 days (864 s). A visitor is
leased the number at `HELLO`; in most rows their last tab closes at `END`, and the call comes
`after` seconds later (CONTRACT.md, "Attribution kinds").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from calltracking.core.kinds import AttributionKind
from calltracking.store.db import Database
from calltracking.store.sites import release_to_reserve
from tests.ami.test_listener import Session
from tests.integration.pbx import (
    BOTH_DATABASES,
    CAPTURED_CALLER,
    PBX,
    Scene,
    StepClock,
    agi_call,
    agi_server,
    ami,
    ami_transcript,
    linkedid_of,
    seed_scene,
    stored,
)
from tests.store.seed import T0

pytestmark = BOTH_DATABASES

CAPTURE = "answered_call"
CAPTURED_DID = "+74951110001"
HELLO = T0 + timedelta(minutes=1)
END = HELLO + timedelta(minutes=2)
HOLD_S, COOLDOWN_S = 60, 864
STATIC, LABEL = "+74957770011", "avito/listing"
STRANGER = "+79990001122"  # a caller no visitor has anything to do with


@dataclass(frozen=True, slots=True)
class Case:
    after: float  # seconds from END to the call
    kind: AttributionKind
    low: float  # confidence bounds, inclusive
    high: float
    ends: bool = True  # the visitor's last tab closes at END
    to_reserve: bool = False  # the number goes back to the reserve 5 s after END
    number: str = "leased"  # or STATIC
    caller: str = CAPTURED_CALLER

    @property
    def holder(self) -> bool:
        """Attributed to the visitor (and the visit) who last held the number."""
        return self.kind.tracked


D, H, C = AttributionKind.DYNAMIC, AttributionKind.HELD, AttributionKind.COOLED
CASES = {
    "leased now": Case(0, D, 1.0, 1.0, ends=False),
    "held 10 s after the release": Case(10, H, 0.8, 0.85),
    "held at hold_s exactly": Case(HOLD_S, H, 0.5, 0.5),
    "cooled just after the hold": Case(HOLD_S + 1, C, 0.45, 0.5),
    "cooled well within the cool-down": Case(600, C, 0.05, 0.3),
    "cooled at the cool-down's end": Case(COOLDOWN_S, C, 0.05, 0.05),
    "unattributed beyond the cool-down": Case(
        COOLDOWN_S + 1, AttributionKind.UNATTRIBUTED, 0.0, 0.0
    ),
    "back in the reserve, still cooling": Case(300, C, 0.05, 0.5, to_reserve=True),
    "back in the reserve, cooled down": Case(
        COOLDOWN_S + 1, AttributionKind.UNKNOWN, 0.0, 0.0, to_reserve=True
    ),
    "static number": Case(0, AttributionKind.STATIC, 1.0, 1.0, ends=False, number=STATIC),
    "another caller than any visitor": Case(0, D, 1.0, 1.0, ends=False, caller=STRANGER),
}


async def arrange(db: Database, case: Case) -> Scene:
    scene = await seed_scene(
        db, HELLO, hold_s=HOLD_S, cooldown_days=COOLDOWN_S / 86400, static={STATIC: LABEL}
    )
    if case.ends:
        await scene.close_tab(END)
    if case.to_reserve:
        async with db.write() as conn:
            await release_to_reserve(conn, scene.site, scene.leased, END + timedelta(seconds=5))
    return scene


async def place_call(
    adapter: str, db: Database, recordings: Path, scene: Scene, case: Case
) -> dict[str, str] | None:
    """One call at END + after, through `adapter`; the AGI's channel variables (None: AMI)."""
    did = scene.leased if case.number == "leased" else case.number
    rewrite = {CAPTURED_DID: did, CAPTURED_CALLER: case.caller}
    clock = StepClock(END + timedelta(seconds=case.after), step_s=0)  # every report at that moment
    if adapter == "agi":
        async with agi_server(db, clock) as agi:
            return await agi_call(agi, CAPTURE, linkedid_of(CAPTURE), rewrite)
    stream = ami_transcript(CAPTURE, rewrite)
    async with ami([Session(stream=stream)], db, recordings, clock):
        await stored(db, lambda rows: rows and rows[0].ended_at is not None)
    return None


@pytest.mark.parametrize("adapter", ["agi", "ami"])
@pytest.mark.parametrize("name", list(CASES))
async def test_attribution_at_the_boundaries(
    any_db: Database, tmp_path: Path, adapter: str, name: str
) -> None:
    case = CASES[name]
    scene = await arrange(any_db, case)
    variables = await place_call(adapter, any_db, tmp_path, scene, case)

    [row] = await stored(any_db, bool)
    at = END + timedelta(seconds=case.after)
    assert (row.pbx_id, row.linkedid, row.started_at) == (PBX, linkedid_of(CAPTURE), at)
    assert (row.caller, row.kind) == (case.caller, case.kind)
    assert case.low <= row.confidence <= case.high
    known = case.kind is not AttributionKind.UNKNOWN
    assert row.site_id == (scene.site.id if known else None)
    w = scene.welcome
    holder = (await scene.lease_id(), w.visitor_id, w.visit_id)
    assert (row.lease_id, row.visitor_id, row.visit_id) == (
        holder if case.holder else (None, None, None)
    )
    assert row.static_label == (LABEL if case.number == STATIC else None)
    assert row.lead is case.kind.tracked  # the caller's first call
    if variables is None:
        return
    source, medium = {True: ("yandex", "cpc"), False: ("", "")}[case.holder]
    if case.number == STATIC:
        source, medium = LABEL.split("/")
    assert variables == {
        "CALLTRACKING_SITE": row.site_id or "",
        "CALLTRACKING_SOURCE": source,
        "CALLTRACKING_MEDIUM": medium,
        "CALLTRACKING_CAMPAIGN": "spring" if case.holder else "",
        "CALLTRACKING_LABEL": f"{source}/{medium}" if source else str(case.kind),
        "CALLTRACKING_ROUTE": "",
        "CALLTRACKING_RECORD": "1",
        "CALLTRACKING_KIND": str(case.kind),
    }

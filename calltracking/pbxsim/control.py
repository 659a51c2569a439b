"""Ways to tell the simulator to place calls: text specs, HTTP, stdin lines, a load profile.

Rules:
- Text spec (`--call` and stdin): `DID[:CALLER[:OUTCOME[:TALK_S]]]`; stdin lines read
  `call DID CALLER OUTCOME [TALK_S]`. CALLER `-`, `none` or empty: no caller id;
  `anonymous`: withheld. OUTCOME is one of `Outcome` (default `answered`).
- HTTP: `POST /calls` JSON `{did, caller?, outcome?, ring_s?, talk_s?, record?, hangup_by?,
  source?}` -> 202 `{uniqueid, linkedid}`; `GET /calls/{linkedid}` -> the call's state and the
  variables its AGI set; `GET /calls` lists them. Bad input -> 422 `{"error": ...}`.
- Load profile: `rate` calls per simulated second for `duration` simulated seconds (so the
  wall-clock rate is `rate * speed`), DIDs drawn from a list, outcomes and talk times drawn from
  a seeded random generator so a run can be repeated.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
from typing import Any

from aiohttp import web

from calltracking.pbxsim.call_plan import HangupBy, Outcome
from calltracking.pbxsim.calls import CallSpec, PlacedCall
from calltracking.pbxsim.sim import PbxSim

log = logging.getLogger(__name__)

SIM_KEY = web.AppKey("pbxsim", PbxSim)
NO_CALLER = ("", "-", "none", "null")
LOAD_MIX = (
    (Outcome.ANSWERED, 70), (Outcome.MISSED, 15), (Outcome.BUSY, 8), (Outcome.FAILED, 2),
    (Outcome.HANGUP_DURING_AGI, 5),
)  # fmt: skip


def _caller(value: str | None) -> str | None:
    if value is None or value.strip().lower() in NO_CALLER:
        return None
    return value.strip()


def parse_call(text: str) -> CallSpec:
    """`DID[:CALLER[:OUTCOME[:TALK_S]]]`; raises ValueError naming what is wrong."""
    parts = text.split(":")
    if not parts[0].strip():
        raise ValueError(f"call spec {text!r}: DID missing")
    caller = _caller(parts[1]) if len(parts) > 1 else None
    outcome = Outcome(parts[2].strip()) if len(parts) > 2 and parts[2].strip() else Outcome.ANSWERED
    talk = float(parts[3]) if len(parts) > 3 and parts[3].strip() else 2.0
    if talk < 0:
        raise ValueError(f"call spec {text!r}: negative talk time")
    return CallSpec(did=parts[0].strip(), caller=caller, outcome=outcome, talk_s=talk)


def parse_line(line: str) -> CallSpec | None:
    """A stdin command; None for blank lines and comments."""
    words = line.split()
    if not words or words[0].startswith("#"):
        return None
    if words[0].lower() != "call" or len(words) < 2:
        raise ValueError(
            f"unknown command {line.strip()!r} (want: call DID CALLER OUTCOME [TALK_S])"
        )
    return parse_call(":".join(words[1:5]))


def spec_from_json(body: Any) -> CallSpec:
    if not isinstance(body, dict) or not isinstance(body.get("did"), str) or not body["did"]:
        raise ValueError("did: a non-empty string is required")
    caller = body.get("caller")
    if caller is not None and not isinstance(caller, str):
        raise ValueError("caller: a string or null")
    numbers = {}
    for key in ("ring_s", "talk_s"):
        value = body.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or value < 0):  # fmt: skip
            raise ValueError(f"{key}: a number >= 0")
        numbers[key] = value
    record = body.get("record")
    if record is not None and not isinstance(record, bool):
        raise ValueError("record: true, false or null")
    source = body.get("source")
    if source is not None and not isinstance(source, str):
        raise ValueError("source: a string or null")
    return CallSpec(
        did=body["did"], caller=_caller(caller), outcome=Outcome(body.get("outcome", "answered")),
        ring_s=None if numbers["ring_s"] is None else float(numbers["ring_s"]),
        talk_s=2.0 if numbers["talk_s"] is None else float(numbers["talk_s"]), record=record,
        hangup_by=HangupBy(body.get("hangup_by", "operator")), source=source,
    )  # fmt: skip


# -- HTTP ----------------------------------------------------------------------------------------
async def _post_call(request: web.Request) -> web.Response:
    try:
        spec = spec_from_json(await request.json())
    except ValueError as exc:  # also bad JSON and unknown outcome words
        return web.json_response({"error": {"code": "invalid", "message": str(exc)}}, status=422)
    placed = await request.app[SIM_KEY].place_call(spec)
    return web.json_response({"uniqueid": placed.uniqueid, "linkedid": placed.linkedid}, status=202)


async def _get_call(request: web.Request) -> web.Response:
    placed = request.app[SIM_KEY].calls.get(request.match_info["linkedid"])
    if placed is None:
        return web.json_response({"error": {"code": "not_found", "message": "no such call"}},
                                 status=404)  # fmt: skip
    return web.json_response(placed.as_json())


async def _list_calls(request: web.Request) -> web.Response:
    return web.json_response({"calls": [c.as_json() for c in request.app[SIM_KEY].calls.values()]})


def create_app(sim: PbxSim) -> web.Application:
    app = web.Application()
    app[SIM_KEY] = sim
    app.router.add_post("/calls", _post_call)
    app.router.add_get("/calls", _list_calls)
    app.router.add_get("/calls/{linkedid}", _get_call)
    return app


async def start_http(sim: PbxSim, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(create_app(sim), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("pbx-sim control HTTP on %s:%d", host, port)
    return runner


# -- stdin ---------------------------------------------------------------------------------------
async def read_commands(sim: PbxSim, reader: asyncio.StreamReader) -> list[PlacedCall]:
    """Place a call per `call ...` line until EOF; bad lines are logged and skipped."""
    placed: list[PlacedCall] = []
    while line := (await reader.readline()).decode(errors="replace"):
        try:
            spec = parse_line(line)
        except ValueError as exc:
            log.warning("pbx-sim stdin: %s", exc)
            continue
        if spec is not None:
            placed.append(await sim.place_call(spec))
    return placed


async def stdin_reader() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


# -- load ----------------------------------------------------------------------------------------
def load_spec(rng: random.Random, dids: list[str], talk_s: float) -> CallSpec:
    outcome = rng.choices([o for o, _ in LOAD_MIX], [w for _, w in LOAD_MIX])[0]
    caller = "anonymous" if rng.random() < 0.05 else f"+7916{rng.randrange(10**7):07d}"
    return CallSpec(
        did=rng.choice(dids), caller=caller, outcome=outcome,
        ring_s=round(rng.uniform(0, 8), 1) if outcome is Outcome.ANSWERED else None,
        talk_s=round(rng.uniform(0.5, 1.5) * talk_s, 1),
        hangup_by=HangupBy.CALLER if rng.random() < 0.5 else HangupBy.OPERATOR,
    )  # fmt: skip


async def run_load(
    sim: PbxSim, rate: float, duration: float, dids: list[str], *, talk_s: float = 30.0,
    seed: int | None = None,
) -> list[PlacedCall]:  # fmt: skip
    """Place `round(rate * duration)` calls evenly spread; returns their handles."""
    if rate <= 0 or duration <= 0 or not dids:
        raise ValueError("load profile needs rate > 0, duration > 0 and at least one DID")
    rng = random.Random(seed)
    count = round(rate * duration)
    interval = 1.0 / (rate * sim.config.speed)
    loop = asyncio.get_running_loop()
    begin = loop.time()
    placed = []
    for i in range(count):
        delay = begin + i * interval - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        placed.append(await sim.place_call(load_spec(rng, dids, talk_s)))
    log.info("pbx-sim load profile placed %d calls", len(placed))
    return placed

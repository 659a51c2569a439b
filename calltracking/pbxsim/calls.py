"""One simulated call run in time: the scenario's phases, the AGI step and the recording.

Rules:
- Time inside a call is simulated: it runs `speed` times faster than the wall clock from the
  call's start, so Cdr durations, ANSWEREDTIME and CEL times read as the real call would.
- The AGI step either talks to a real FastAGI server (`agi` address set) or runs in-process the
  same commands the fixtures' FastAGI server sent; both go through `agi_client.execute`, so the
  AMI shows the same AGIExec/VarSet events either way.
- `hangup_during_agi`: with a real server the caller gives up right after the env block is sent
  (the tracker's AGI is too quick to catch otherwise); in-process, `ring_s` after the AGI began.
- Recording follows `spec.record`, else the AGI's `CALLTRACKING_RECORD` (`0` = off), else on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from calltracking.pbxsim import recordings
from calltracking.pbxsim.agi_client import FastAgiSession, agi_env, run_scripted
from calltracking.pbxsim.call_plan import ANONYMOUS, CallPlan, HangupBy, Outcome, caller_all
from calltracking.pbxsim.messages import AmiMessage
from calltracking.pbxsim.scenario import CallScenario

DEFAULT_RING_S = {
    Outcome.ANSWERED: 0.0,
    Outcome.MISSED: 10.0,
    Outcome.BUSY: 0.0,
    Outcome.FAILED: 0.0,
    Outcome.HANGUP_DURING_AGI: 3.0,
}


@dataclass(frozen=True, slots=True)
class CallSpec:
    """What to simulate. `caller` None: no caller id; `"anonymous"`: withheld."""

    did: str
    caller: str | None = None
    outcome: Outcome = Outcome.ANSWERED
    ring_s: float | None = None  # None: per outcome (DEFAULT_RING_S)
    talk_s: float = 2.0
    record: bool | None = None  # None: as the AGI says (CALLTRACKING_RECORD), default on
    hangup_by: HangupBy = HangupBy.OPERATOR
    source: str | None = None  # in-process AGI only: the CALLTRACKING_SOURCE it sets

    @property
    def ring_seconds(self) -> float:
        return DEFAULT_RING_S[self.outcome] if self.ring_s is None else self.ring_s


@dataclass(frozen=True, slots=True)
class CallResult:
    uniqueid: str
    linkedid: str
    outcome: Outcome
    agi_status: str
    agi_variables: dict[str, str]
    recording: Path | None


@dataclass(frozen=True, slots=True)
class CallEnv:
    """What a call needs from the simulator around it."""

    emit: Callable[[list[AmiMessage], float], None]  # messages, simulated time
    speed: float
    agi: tuple[str, int] | None
    monitor_dir: Path | None
    late_close_s: float


@dataclass(slots=True)
class PlacedCall:
    """Handle of a running call; `await placed.finished` for its result."""

    spec: CallSpec
    uniqueid: str
    linkedid: str
    channel: str
    finished: asyncio.Future[CallResult]
    state: str = "ringing"
    agi_status: str = ""
    agi_variables: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {
            "uniqueid": self.uniqueid, "linkedid": self.linkedid, "channel": self.channel,
            "did": self.spec.did, "caller": self.spec.caller, "outcome": str(self.spec.outcome),
            "state": self.state, "agi_status": self.agi_status,
            "agi_variables": dict(self.agi_variables),
        }  # fmt: skip


class CallRun:
    """Drives one call; is also the AGI's view of the trunk channel (`AgiChannel`)."""

    def __init__(self, plan: CallPlan, spec: CallSpec, env: CallEnv, placed: PlacedCall) -> None:
        self._plan = plan
        self._spec = spec
        self._env = env
        self._placed = placed
        self._t0_wall = time.time()
        self._t0_mono = time.monotonic()
        self._scenario = CallScenario(plan, self._t0_wall)
        self._dead = False
        self.set_up = asyncio.Event()

    # -- time ----------------------------------------------------------------------------------
    def _now(self) -> float:
        return self._t0_wall + (time.monotonic() - self._t0_mono) * self._env.speed

    def _emit(self, messages: list[AmiMessage]) -> None:
        self._env.emit(messages, self._now())

    async def _sleep(self, simulated_s: float) -> None:
        if simulated_s > 0:
            await asyncio.sleep(simulated_s / self._env.speed)

    # -- AgiChannel ----------------------------------------------------------------------------
    @property
    def dead(self) -> bool:
        return self._dead

    def lookup(self, name: str) -> str | None:
        plan, caller = self._plan, self._plan.caller
        special = {
            "CHANNEL(linkedid)": plan.uniqueid,
            "CHANNEL(uniqueid)": plan.uniqueid,
            "CHANNEL(name)": plan.trunk_channel,
            "UNIQUEID": plan.uniqueid,
            "EXTEN": plan.did,
            "CONTEXT": plan.context,
            "CALLERID(all)": caller_all(caller),
            "CALLERID(num)": caller or "",
            "CALLERID(name)": "Anonymous" if caller == ANONYMOUS else "",
        }
        if name in special:
            return special[name]
        return self._scenario.variables.get(name)

    def set_variable(self, name: str, value: str) -> None:
        self._placed.agi_variables[name] = value
        self._emit([self._scenario.agi_set(name, value)])

    def command_started(self, command_id: int, command: str) -> None:
        self._emit([self._scenario.agi_command(command_id, command, None)])

    def command_finished(self, command_id: int, command: str, code: int, result: str) -> None:
        self._emit([self._scenario.agi_command(command_id, command, (code, result))])

    # -- the call ------------------------------------------------------------------------------
    async def run(self) -> CallResult:
        spec, sc, emit = self._spec, self._scenario, self._emit
        emit(sc.setup(self._now()))
        self._placed.state = "agi"
        self.set_up.set()
        status = await self._agi()
        self._placed.agi_status = status
        emit(sc.agi_done(status, self._now()))
        if self._dead:
            emit(sc.end_after_agi_hangup(self._now()))
            return self._result(status, None)
        record = spec.record
        if record is None:
            record = sc.variables.get("CALLTRACKING_RECORD", "1").strip() != "0"
        emit(sc.route(self._now(), record))
        self._placed.state = "dialing"
        path = None
        if record and self._env.monitor_dir is not None:
            path = self._env.monitor_dir / f"{self._plan.uniqueid}.wav"
            await asyncio.to_thread(recordings.start, path)
        talk = await self._dial()
        self._placed.state = "ended"
        if path is not None:
            await self._sleep(self._env.late_close_s)
            await asyncio.to_thread(recordings.finish, path, talk, hash(self._plan.uniqueid))
        return self._result(status, path)

    async def _dial(self) -> float:
        """Ring, then answer and talk, or fail; returns the talk time (0 when not answered)."""
        spec, sc, emit = self._spec, self._scenario, self._emit
        ring = spec.ring_seconds
        if ring > 0 or spec.outcome is Outcome.MISSED:
            emit(sc.ringing())
            await self._sleep(ring)
        if spec.outcome is not Outcome.ANSWERED:
            emit(sc.dial_failed(spec.outcome, self._now()))
            return 0.0
        emit(sc.answer(self._now()))
        self._placed.state = "answered"
        await self._sleep(spec.talk_s)
        if spec.hangup_by is HangupBy.CALLER:
            emit(sc.caller_hangs_up(self._now()))
        else:
            emit(sc.operator_hangs_up(self._now()))
        return spec.talk_s

    def _caller_gives_up(self) -> None:
        self._dead = True
        self._emit(self._scenario.caller_gave_up())

    async def _agi(self) -> str:
        gives_up = self._spec.outcome is Outcome.HANGUP_DURING_AGI
        if self._env.agi is None:
            if gives_up:
                await self._sleep(self._spec.ring_seconds)
                self._caller_gives_up()
            return run_scripted(self, self._script(gives_up))
        host, port = self._env.agi
        plan = self._plan
        env = agi_env(
            request=plan.agi_app_data.split(",", 1)[0], channel=plan.trunk_channel,
            uniqueid=plan.uniqueid, caller=plan.caller, context=plan.context, did=plan.did,
            args=plan.agi_app_data.split(",")[1:],
        )  # fmt: skip
        session = FastAgiSession(self)

        def on_connected() -> None:
            if gives_up:
                self._caller_gives_up()
                session.notify_hangup()

        status = await session.run(host, port, env, on_connected)
        if gives_up and not self._dead:
            self._caller_gives_up()
        return status

    def _script(self, gives_up: bool) -> list[str]:
        """What the fixtures' FastAGI server sent (see fixtures/asterisk/README.md)."""
        plan = self._plan
        lines = [
            f'VERBOSE "calltracking lookup did={plan.did} caller={plan.caller or ""}" 1',
            "GET VARIABLE CT_DID",
            'GET FULL VARIABLE "${CALLERID(all)}"',
        ]
        if self._spec.source:  # for a DID it does not know, that server set nothing
            lines.append(f'SET VARIABLE CALLTRACKING_SOURCE "{self._spec.source}"')
            lines.append(f'SET VARIABLE CALLTRACKING_ID "ct-{plan.did}-{plan.uniqueid}"')
        if gives_up:
            lines.append("ANSWER")
        return lines

    def _result(self, status: str, path: Path | None) -> CallResult:
        self._placed.state = "ended"
        return CallResult(
            uniqueid=self._plan.uniqueid, linkedid=self._plan.uniqueid,
            outcome=self._spec.outcome, agi_status=status,
            agi_variables=dict(self._placed.agi_variables), recording=path,
        )  # fmt: skip

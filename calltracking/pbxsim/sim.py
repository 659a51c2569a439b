"""`PbxSim`: the simulated Asterisk as one object (AMI server + calls), for the CLI, the demo,
the tests and the benchmarks.

Rules:
- Uniqueids are `<epoch>.<sequence>` with one sequence for the whole process, as Asterisk's;
  channel names end in `-<8 hex digits>` from one channel counter.
- Every emitted event is first folded into the channel registry, then queued to every session,
  so an action reply never contradicts the stream.
- Each call runs as a task owned here; `stop()` cancels and awaits them all before closing AMI.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from calltracking.pbxsim.ami_server import AmiServer
from calltracking.pbxsim.call_plan import CallPlan, Outcome
from calltracking.pbxsim.calls import CallEnv, CallResult, CallRun, CallSpec, PlacedCall
from calltracking.pbxsim.channels import ChannelRegistry
from calltracking.pbxsim.messages import AmiMessage, with_timestamp

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SimConfig:
    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "calltracking"
    secret: str = "calltracking"
    context: str = "from-trunk"
    trunk: str = "trunk"
    operator: str = "operator"
    speed: float = 1.0
    agi: tuple[str, int] | None = None  # FastAGI to call; None: in-process script
    monitor_dir: Path | None = None  # where WAV files are written; None: not written
    asterisk_monitor_dir: str | None = None  # how Asterisk names that folder in events
    dial_timeout_s: int = 30
    late_close_s: float = 1.0  # MixMonitor closes the file this long after the Hangup
    # manager.conf `timestampevents = yes`: every event carries `Timestamp: <epoch.usec>` (the
    # call's simulated time), as in fixtures/asterisk/ami_answered_call_timestampevents.txt.
    timestampevents: bool = False
    # The AMI user's `read` classes (manager.conf), e.g. "call,cdr" for a user lacking rights.
    read: str = "all"
    # Empty: the captures' dialplan (the Dial runs in the trunk context). A context name: the
    # shipped dialplan's shape; the trunk channel sets CALLTRACKING_DID, then goes on through
    # `calltracking-default-route` to this context, where the Dial runs (extensions_calltracking).
    route_context: str = ""

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise ValueError("speed must be > 0")


class PbxSim:
    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.registry = ChannelRegistry()
        self.calls: dict[str, PlacedCall] = {}
        self._ami = AmiServer(
            self.registry,
            self.config.username,
            self.config.secret,
            clock=time.time,
            read=self.config.read,
        )
        self._ami.contexts = {self.config.context}
        self._tasks: set[asyncio.Task[None]] = set()
        self._uid_seq = 0
        self._chan_seq = 0

    @property
    def ami_port(self) -> int:
        return self._ami.port

    async def start(self) -> None:
        await self._ami.start(self.config.host, self.config.port)

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._ami.stop()

    def emit(self, messages: list[AmiMessage], at: float | None = None) -> None:
        now = time.time()
        for message in messages:
            self.registry.fold(message, now)
        if self.config.timestampevents:
            messages = [with_timestamp(m, now if at is None else at) for m in messages]
        self._ami.publish(messages)

    def drop_ami_sessions(self) -> int:
        """Cut every AMI connection at once (a network loss); how many were cut."""
        return self._ami.drop_sessions()

    @property
    def ami_logins(self) -> int:
        """Successful AMI logins so far."""
        return self._ami.logins

    # -- calls ---------------------------------------------------------------------------------
    def _uniqueid(self) -> str:
        uid = f"{int(time.time())}.{self._uid_seq}"
        self._uid_seq += 1
        return uid

    def _suffix(self) -> str:
        suffix = f"{self._chan_seq:08x}"
        self._chan_seq += 1
        return suffix

    def _plan(self, spec: CallSpec) -> CallPlan:
        cfg = self.config
        uid = self._uniqueid()
        agi_host, agi_port = cfg.agi or ("127.0.0.1", 4573)
        folder = cfg.asterisk_monitor_dir or (
            str(cfg.monitor_dir.resolve()) if cfg.monitor_dir else "/var/spool/asterisk/monitor"
        )
        ring = spec.ring_seconds
        timeout = max(1, round(ring)) if spec.outcome is Outcome.MISSED else cfg.dial_timeout_s
        return CallPlan(
            did=spec.did, caller=spec.caller or None, context=cfg.context,
            trunk_channel=f"PJSIP/{cfg.trunk}-{self._suffix()}", uniqueid=uid,
            operator_suffix=self._suffix(), operator_uniqueid=self._uniqueid(),
            operator=cfg.operator, bridge_id=str(uuid.uuid4()),
            agi_app_data=f"agi://{agi_host}:{agi_port}/calltracking,{spec.did}",
            recording_path=f"{folder.rstrip('/')}/{uid}.wav", dial_timeout_s=timeout,
            route_context=cfg.route_context,
        )  # fmt: skip

    async def place_call(self, spec: CallSpec) -> PlacedCall:
        """Start a call; returns once its trunk channel exists (Newchannel sent)."""
        cfg = self.config
        plan = self._plan(spec)
        loop = asyncio.get_running_loop()
        placed = PlacedCall(spec=spec, uniqueid=plan.uniqueid, linkedid=plan.uniqueid,
                            channel=plan.trunk_channel, finished=loop.create_future())  # fmt: skip
        env = CallEnv(emit=self.emit, speed=cfg.speed, agi=cfg.agi,
                      monitor_dir=cfg.monitor_dir, late_close_s=cfg.late_close_s)  # fmt: skip
        run = CallRun(plan, spec, env, placed)
        self.calls[placed.linkedid] = placed
        task = asyncio.create_task(self._run(run, placed), name=f"pbxsim-call-{plan.uniqueid}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info("pbx-sim call %s to %s (%s) placed", placed.linkedid, spec.did, spec.outcome)
        set_up = asyncio.create_task(run.set_up.wait())
        try:
            await asyncio.wait({task, set_up}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            set_up.cancel()
        return placed

    async def _run(self, run: CallRun, placed: PlacedCall) -> None:
        try:
            result = await run.run()
        except asyncio.CancelledError:
            placed.finished.cancel()
            raise
        except Exception:
            # One broken call must not stop the simulator; its handle still completes.
            log.exception("pbx-sim call %s failed", placed.linkedid)
            placed.state = "error"
            result = CallResult(placed.uniqueid, placed.linkedid, placed.spec.outcome,
                                placed.agi_status, dict(placed.agi_variables), None)  # fmt: skip
        if not placed.finished.done():
            placed.finished.set_result(result)
        log.info("pbx-sim call %s ended (%s)", placed.linkedid, placed.state)

"""The AMI source of `bench.ami_bench`: the shipped pbx-sim in its own child process.

Ready line: `{"port", "pid"}`. On a `go` line from stdin it places `--calls` calls through the
pbx-sim's load profile (`run_load`, seeded, DIDs from the reserve `bench.common` seeds) at a wall
rate far above what it can place, so calls go out as fast as the simulator makes them; the
in-process AGI script runs (no FastAGI server), so only the AMI listener reports calls. When
every call has finished it emits one `UserEvent` (`UserEvent: BenchDone`) so a reader knows
the stream is complete, and answers `{"events", "calls", "seconds"}`: the AMI messages the
calls emitted (the sentinel excluded) and the time from `go` to the last call's end.

With `--replay FILE` it places no call: on `go` it writes FILE (a stream `ami_bench` recorded
from a sim run, sentinel included) to the logged-in sessions, so the source costs nearly no CPU
and cannot be what limits a consumer on a busy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

from bench.common import announce, quiet_logging, reserve_numbers, stdin_lines
from calltracking.pbxsim import PbxSim, SimConfig, run_load
from calltracking.pbxsim.messages import AmiMessage, event

USERNAME = SECRET = "bench"
SENTINEL = "BenchDone"
DIDS = 50
RATE = 10.0  # calls per simulated second; times `speed`, the asked wall rate


class CountingSim(PbxSim):
    emitted = 0

    def emit(self, messages: list[AmiMessage], at: float | None = None) -> None:
        self.emitted += len(messages)
        super().emit(messages, at)


async def serve(calls: int, speed: float, talk_s: float, max_s: float) -> None:
    sim = CountingSim(SimConfig(port=0, speed=speed, username=USERNAME, secret=SECRET))
    await sim.start()
    try:
        announce({"port": sim.ami_port, "pid": os.getpid()})
        lines = await stdin_lines()
        async with asyncio.timeout(max_s):
            while (line := await lines.readline()) and line.strip() != b"go":
                pass
            if not line:
                return
            begin = time.perf_counter()
            dids = [n.removeprefix("+") for n in reserve_numbers(DIDS)]
            placed = await run_load(sim, RATE, calls / RATE, dids, talk_s=talk_s, seed=7)
            await asyncio.gather(*(p.finished for p in placed))
            seconds = time.perf_counter() - begin
            emitted = sim.emitted
            sim.emit([event("UserEvent", "user,all", [("UserEvent", SENTINEL)])])
            announce({"events": emitted, "calls": len(placed), "seconds": seconds})
            while await lines.readline():
                pass
    finally:
        await sim.stop()


async def replay(path: str, max_s: float) -> None:
    """Serve logins and actions as the sim does; on `go`, write the recorded stream at `path`
    (events and the sentinel) to every logged-in session as fast as the socket takes it."""
    sim = PbxSim(SimConfig(port=0, username=USERNAME, secret=SECRET))
    await sim.start()
    try:
        announce({"port": sim.ami_port, "pid": os.getpid()})
        lines = await stdin_lines()
        async with asyncio.timeout(max_s):
            while (line := await lines.readline()) and line.strip() != b"go":
                pass
            if not line:
                return
            data = Path(path).read_bytes()
            begin = time.perf_counter()
            # The recorded bytes go straight onto the sessions' write queues (the sim's own
            # writer loop sends them): no simulation runs, so the source costs a socket write.
            for session in list(sim._ami._sessions):
                for at in range(0, len(data), 1 << 16):
                    session.queue.put_nowait(data[at : at + (1 << 16)])
            events = data.count(b"\r\n\r\nEvent: ") + data.startswith(b"Event: ") - 1
            announce({"events": events, "calls": 0, "seconds": time.perf_counter() - begin})
            while await lines.readline():
                pass
    finally:
        await sim.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--speed", type=float, default=1000.0)
    parser.add_argument("--talk-s", type=float, default=30.0)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--replay", default="", help="a stream recorded by ami_bench: serve it")
    args = parser.parse_args()
    quiet_logging()
    if args.replay:
        asyncio.run(replay(args.replay, args.max_seconds))
        return
    asyncio.run(serve(args.calls, args.speed, args.talk_s, args.max_seconds))


if __name__ == "__main__":
    main()

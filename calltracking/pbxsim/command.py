"""`calltracking pbx-sim`: flags and the run loop (the lead wires these into `cli.py`).

Rules:
- Bad flag values stop start-up with one clear line naming the flag (argparse `error`).
- The simulator runs until cancelled (Ctrl-C), unless `--exit-when-done` is given: then it stops
  once the `--call` list, stdin and the load profile are all done and every call has ended.
- The one stdout line says where the AMI (and the HTTP control) listen, so scripts using port 0
  can find them; everything else goes to logging.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from calltracking.pbxsim.calls import PlacedCall
from calltracking.pbxsim.control import (
    parse_call,
    read_commands,
    run_load,
    start_http,
    stdin_reader,
)
from calltracking.pbxsim.sim import PbxSim, SimConfig

log = logging.getLogger(__name__)


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT")
    return host, int(port)


def _positive(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be > 0")
    return number


def _call(value: str) -> str:
    try:
        parse_call(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="AMI listen address [127.0.0.1]")
    add("--port", type=int, default=5038, help="AMI port, 0 for any free one [5038]")
    add("--username", default="calltracking", help="AMI user [calltracking]")
    add("--secret", default="calltracking", help="AMI secret [calltracking]")
    add("--context", default="from-trunk", help="inbound dialplan context [from-trunk]")
    add("--trunk", default="trunk", help="trunk endpoint: channels PJSIP/<trunk>-NNNNNNNN [trunk]")
    add("--operator", default="operator", help="operator endpoint dialed [operator]")
    add("--speed", type=_positive, default=1.0, help="time factor; 10 runs calls 10x faster [1]")
    add("--agi", type=_host_port, metavar="HOST:PORT", help="FastAGI to call at the AGI step")
    add("--monitor-dir", type=Path, help="folder where recordings are written [none: not written]")
    add("--asterisk-monitor-dir", help="that folder as Asterisk names it in events [same]")
    add("--call", action="append", type=_call, default=[],
        metavar="DID[:CALLER[:OUTCOME[:TALK_S]]]",
        help="place a call at start (repeatable); OUTCOME answered|missed|busy|failed|"
             "hangup_during_agi")  # fmt: skip
    add("--http", type=_host_port, metavar="HOST:PORT", help="HTTP control (POST /calls)")
    add("--stdin", action="store_true", help="read 'call DID CALLER OUTCOME [TALK_S]' lines")
    add("--rate", type=_positive, help="load profile: calls per second")
    add("--duration", type=_positive, help="load profile: seconds")
    add("--dids", default="", help="load profile: comma-separated DIDs")
    add("--talk-s", type=_positive, default=30.0, help="load profile: mean talk time [30]")
    add("--seed", type=int, help="load profile: random seed")
    add("--exit-when-done", action="store_true", help="stop once all placed calls have ended")
    add(
        "--route-context",
        default="",
        help="emit the shipped dialplan's shape: CALLTRACKING_DID, then the call moves on to "
        "this context (e.g. operators), where it is dialed [off: the captures' shape]",
    )
    add(
        "--timestampevents",
        action="store_true",
        help="every event carries Timestamp: (manager.conf timestampevents = yes)",
    )
    add("--read", default="all",
        help="the AMI user's read classes, e.g. call,cdr: a user lacking rights [all]")  # fmt: skip


def config_from_args(args: argparse.Namespace) -> SimConfig:
    return SimConfig(
        host=args.host, port=args.port, username=args.username, secret=args.secret,
        context=args.context, trunk=args.trunk, operator=args.operator, speed=args.speed,
        agi=args.agi, monitor_dir=args.monitor_dir, asterisk_monitor_dir=args.asterisk_monitor_dir,
        route_context=args.route_context, timestampevents=args.timestampevents, read=args.read,
    )  # fmt: skip


async def _drive(sim: PbxSim, args: argparse.Namespace) -> list[PlacedCall]:
    placed = [await sim.place_call(parse_call(text)) for text in args.call]
    async with asyncio.TaskGroup() as group:
        stdin_task = (
            group.create_task(read_commands(sim, await stdin_reader())) if args.stdin else None
        )
        load_task = None
        if args.rate and args.duration:
            dids = [d.strip() for d in args.dids.split(",") if d.strip()]
            load_task = group.create_task(
                run_load(sim, args.rate, args.duration, dids, talk_s=args.talk_s, seed=args.seed)
            )
    for task in (stdin_task, load_task):
        if task is not None:
            placed += task.result()
    return placed


async def run_from_args(args: argparse.Namespace) -> None:
    if (args.rate is None) != (args.duration is None):
        raise SystemExit("pbx-sim: --rate and --duration go together")
    if args.rate and not args.dids.strip():
        raise SystemExit("pbx-sim: --rate needs --dids")
    sim = PbxSim(config_from_args(args))
    await sim.start()
    runner = await start_http(sim, *args.http) if args.http else None
    try:
        http = f" http={args.http[0]}:{args.http[1]}" if args.http else ""
        sys.stdout.write(f"pbx-sim ami={args.host}:{sim.ami_port}{http}\n")
        sys.stdout.flush()
        placed = await _drive(sim, args)
        if args.exit_when_done:
            await asyncio.gather(*(call.finished for call in placed))
            return
        await asyncio.Event().wait()  # until cancelled (Ctrl-C)
    finally:
        if runner is not None:
            await runner.cleanup()
        await sim.stop()

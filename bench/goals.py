"""Every goal of issue 9, one benchmark after another, on this host (docs/benchmarks.md, "Issue
9's goals, all on one host").

    python -m bench.goals --out /tmp/goals \\
        --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/test \\
        --amqp-url amqp://guest:guest@127.0.0.1:5672/

Goals are judged by ratios within one run, and a host's speed drifts within minutes, so a
reading of all of them is worth most when they run back to back on one quiet host. Each
benchmark runs as its own child (`python -m bench.X ...`) with nothing else in flight; its whole
output goes to `OUT/<name>.log`, and a line per benchmark (start, host load, exit) to stdout.
A benchmark that fails or passes `--timeout` is reported and the rest still run; the exit code
is the number that did not finish cleanly. `--only NAME ...` runs some of them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Goal:
    name: str
    args: tuple[str, ...]


def goals(database_url: str, amqp_url: str) -> list[Goal]:
    """The benchmarks, in the order the sweep runs them (the issue's order, roughly)."""
    pg = ("--database-url", database_url)
    # A split site, each node held to a quarter of a core, 100 handshakes in flight per node.
    nodes: tuple[str, ...] = ("-n", "3000", "--repeat", "5", "--web-cpu", "0.25", "--grown")
    nodes += ("--parts", "2", "--opening-per-node")
    return [
        Goal("ws_sqlite", ("bench.ws_bench", "--sizes", "1000", "--repeat", "3")),
        Goal("ws_pg", ("bench.ws_bench", "--sizes", "1000", "--repeat", "3", *pg)),
        Goal("storm_sqlite", ("bench.reconnect_bench", "--visitors", "5000", "--tabs", "2")),
        Goal("storm_pg", ("bench.reconnect_bench", "--visitors", "5000", "--tabs", "2", *pg)),
        Goal("nodes", ("bench.nodes_bench", *nodes, *pg, "--amqp-url", amqp_url)),
        Goal("ws_10k", ("bench.ws_bench", "--sizes", "10000", "--repeat", "1")),
        # 200 new visitors take ~0.1 s: many short runs, the two pools taking turns.
        Goal(
            "pools",
            ("bench.decider_profile", "-n", "200", "--pool", "200", "20000", "--repeat", "15"),
        ),
        Goal("idle", ("bench.idle_bench",)),
        Goal("peer", ("bench.peer_bench", "-n", "1000", "--hold", "60")),
        Goal("agi_sqlite", ("bench.agi_bench", "--concurrency", "32", "--repeat", "5")),
        Goal("agi_pg", ("bench.agi_bench", "--concurrency", "32", "--repeat", "5", *pg)),
        Goal("ami_sqlite", ("bench.ami_bench",)),
        Goal("ami_pg", ("bench.ami_bench", *pg)),
    ]


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def run(goal: Goal, out: Path, timeout_s: float) -> bool:
    """One benchmark, its output to `out/<name>.log`; True if it exited with 0 in time."""
    print(f"{time.strftime('%H:%M:%S')} {goal.name}: started, load {_load()}", flush=True)
    started = time.monotonic()
    with (out / f"{goal.name}.log").open("wb") as log:
        try:
            code = subprocess.run(
                [sys.executable, "-m", *goal.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout_s,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            code = None
    took = time.monotonic() - started
    outcome = "timed out" if code is None else f"exit {code}"
    print(f"{time.strftime('%H:%M:%S')} {goal.name}: {outcome} after {took:.0f} s", flush=True)
    return code == 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, type=Path, help="a directory for the logs")
    parser.add_argument("--database-url", required=True, help="PostgreSQL (postgresql+asyncpg)")
    parser.add_argument("--amqp-url", required=True, help="RabbitMQ, for the two web nodes")
    parser.add_argument("--only", nargs="*", default=None, help="names of the goals to run")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per benchmark")
    args = parser.parse_args()
    chosen = goals(args.database_url, args.amqp_url)
    if args.only:
        unknown = set(args.only) - {goal.name for goal in chosen}
        if unknown:
            parser.error(f"no such goal: {', '.join(sorted(unknown))}")
        chosen = [goal for goal in chosen if goal.name in args.only]
    os.makedirs(args.out, exist_ok=True)
    failed = sum(not run(goal, args.out, args.timeout) for goal in chosen)
    print(f"{time.strftime('%H:%M:%S')} done: {len(chosen) - failed} of {len(chosen)} finished")
    raise SystemExit(failed)


if __name__ == "__main__":
    main()

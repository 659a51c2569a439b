"""Where a benchmark's processes spent their CPU: the samples bench/sampler_site/ wrote, per unit
of work, and two sets side by side.

A set is one or more runs, each a JSON file a benchmark wrote beside its samples (`nodes_bench
--cpu-samples DIR`): the unit of work (`per`: new visitors) and, per process, its samples'
file and the CPU it was measured to use over the same time. Each process's samples are scaled
to that CPU, so a set's figures are microseconds of CPU per unit, whatever the sampling rate
was; runs of a set add up, their units too.

    python -m bench.cpu_samples DIR/run1-1.json DIR/run2-1.json --vs DIR/run1-2.json DIR/run2-2.json
    python -m bench.cpu_samples ... --under site_batches.py:_transaction --depth 1

Frames are `file.py:function`. By default a frame's figure includes everything it called
("inclusive"); `--self` counts only samples taken in the frame itself. `--under FRAME` breaks
down what the innermost FRAME of each stack called, `--depth` frames deep. `--only` keeps the
processes whose name starts with it (default `web`: the web nodes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common import table

SITE_DIR = Path(__file__).parent / "sampler_site"
POLL_S = 0.05
# The sampler's own frame, when a sample lands while it runs: cut off, its caller stays.
SAMPLER_FRAME = "sitecustomize.py:sample"


@dataclass(frozen=True)
class Stacks:
    """Samples as microseconds of CPU per unit of work, by stack (frames outermost first), and
    the collector's own CPU per unit (its passes are spread over the stacks)."""

    us: dict[tuple[str, ...], float]
    units: float
    collector_us: float = 0.0

    @property
    def total(self) -> float:
        return sum(self.us.values())


def sampler_env(prefix: Path) -> dict[str, str]:
    """The environment that makes a child Python process sample its CPU (sampler_site/), to
    write `<prefix>.<pid>` when told."""
    paths = [str(SITE_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"PYTHONPATH": os.pathsep.join(paths), "CT_CPU_SAMPLES": str(prefix)}


def start_sampling(pids: Iterable[int]) -> None:
    """A fresh count in each process (they must run with `sampler_env`)."""
    for pid in pids:
        os.kill(pid, signal.SIGUSR2)


async def finish_sampling(
    prefix: Path, processes: Sequence[tuple[str, int, float]], per: float, within_s: float = 10.0
) -> Path:
    """Stop the count in each (name, pid, CPU seconds since `start_sampling`), wait for their
    files, and write the run's JSON (`<prefix>.json`, read by `load_runs`) for `per` units."""
    for _, pid, _ in processes:
        os.kill(pid, signal.SIGUSR1)
    files = {pid: Path(f"{prefix}.{pid}") for _, pid, _ in processes}
    for _ in range(int(within_s / POLL_S)):
        if all(path.exists() for path in files.values()):
            break
        await asyncio.sleep(POLL_S)
    else:
        missing = [str(path) for path in files.values() if not path.exists()]
        raise TimeoutError(f"no CPU samples written within {within_s}s: {missing}")
    run = {
        "per": per,
        "processes": [
            {"name": name, "samples": files[pid].name, "cpu_s": cpu_s}
            for name, pid, cpu_s in processes
        ],
    }
    path = Path(f"{prefix}.json")
    path.write_text(json.dumps(run, indent=1))
    return path


def read_collector_s(text: str) -> float:
    """The CPU seconds a sample file says the garbage collector took, all generations."""
    seconds = 0.0
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[0] == "#gc":
            with contextlib.suppress(ValueError):
                seconds += float(fields[3])
    return seconds


def read_samples(text: str) -> Counter[tuple[str, ...]]:
    """A sample file's stacks and counts; the sampler's own frame is dropped."""
    counts: Counter[tuple[str, ...]] = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = tuple(stack.split(";"))
        if SAMPLER_FRAME in frames:
            frames = frames[: frames.index(SAMPLER_FRAME)]
        counts[frames] += int(count)
    return counts


def load_runs(paths: Iterable[Path], only: str) -> Stacks:
    """The runs' processes whose name starts with `only`, each scaled to its measured CPU."""
    us: defaultdict[tuple[str, ...], float] = defaultdict(float)
    units = 0.0
    collector_s = 0.0
    for path in paths:
        run = json.loads(path.read_text())
        units += run["per"]
        for process in run["processes"]:
            if not process["name"].startswith(only):
                continue
            text = (path.parent / process["samples"]).read_text()
            counts = read_samples(text)
            collector_s += read_collector_s(text)
            taken = sum(counts.values())
            if not taken:
                continue
            us_each = process["cpu_s"] * 1e6 / taken
            for stack, count in counts.items():
                us[stack] += count * us_each
    return Stacks(
        {stack: value / units for stack, value in us.items()}, units, collector_s * 1e6 / units
    )


def by_frame(stacks: Stacks, inclusive: bool = True) -> dict[str, float]:
    """Microseconds per unit in each frame: with what it called (inclusive), or in itself."""
    frames: defaultdict[str, float] = defaultdict(float)
    for stack, value in stacks.us.items():
        if not stack:
            continue
        for frame in set(stack) if inclusive else (stack[-1],):
            frames[frame] += value
    return frames


def under(stacks: Stacks, frame: str, depth: int = 1) -> dict[str, float]:
    """What the innermost `frame` of each stack spent its time in, `depth` frames deep
    ("(self)": in `frame` itself)."""
    parts: defaultdict[str, float] = defaultdict(float)
    for stack, value in stacks.us.items():
        if frame not in stack:
            continue
        at = len(stack) - 1 - stack[::-1].index(frame)
        parts[";".join(stack[at + 1 : at + 1 + depth]) or "(self)"] += value
    return parts


def compare(
    a: Mapping[str, float], b: Mapping[str, float], top: int
) -> list[tuple[str, float, float, float]]:
    """(frame, a, b, b - a), the largest differences first, then the largest negative."""
    rows = [
        (key, a.get(key, 0.0), b.get(key, 0.0), b.get(key, 0.0) - a.get(key, 0.0))
        for key in set(a) | set(b)
    ]
    rows.sort(key=lambda row: -row[3])
    if len(rows) <= top:
        return rows
    head = rows[: top - top // 4]
    return head + rows[len(rows) - top // 4 :]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", type=Path, nargs="+", help="a set's runs (JSON files)")
    parser.add_argument("--vs", type=Path, nargs="+", default=[], help="the other set's runs")
    parser.add_argument("--under", default="", help="break down what this frame called")
    parser.add_argument("--depth", type=int, default=1, help="frames below --under [1]")
    parser.add_argument("--self", action="store_true", help="a frame's own samples only")
    parser.add_argument("--top", type=int, default=40, help="rows shown [40]")
    parser.add_argument("--only", default="web", help="processes whose name starts so [web]")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    sets = [load_runs(args.runs, args.only)]
    if args.vs:
        sets.append(load_runs(args.vs, args.only))

    def frames(stacks: Stacks) -> dict[str, float]:
        if args.under:
            return under(stacks, args.under, args.depth)
        return by_frame(stacks, inclusive=not args.self)

    print(
        "µs of CPU per unit: "
        + ", ".join(
            f"{s.total:.1f} over {s.units:g} units ({s.collector_us:.1f} in the collector)"
            for s in sets
        )
        + (f" (under {args.under})" if args.under else "")
    )
    if len(sets) == 1:
        counted = sorted(frames(sets[0]).items(), key=lambda item: -item[1])[: args.top]
        print(table(["frame", "µs"], [(k, round(v, 1)) for k, v in counted]))
        return
    rows = compare(frames(sets[0]), frames(sets[1]), args.top)
    print(
        table(
            ["frame", "first µs", "second µs", "difference"],
            [(k, round(a, 1), round(b, 1), f"{d:+.1f}") for k, a, b, d in rows],
        )
    )


if __name__ == "__main__":
    main()

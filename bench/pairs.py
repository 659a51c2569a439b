"""Run one benchmark on two revisions in alternation, and put every run's rows in one table.

    python -m bench.pairs --base 4d89177 --pairs 3 -- bench.agi_bench --concurrency 32 --repeat 1

This host is shared and its speed drifts within minutes, so a change is judged by pairs: the
revision before it and the revision with it, run one right after the other, several times.
`--base` (and `--head`, by default the working tree, uncommitted changes included) are
unpacked with `git archive` into a temporary directory each. Both run the head's `bench/`
(the same measurement on both sides; the base's may predate an option or a column), with the
tree's own code first on `PYTHONPATH`. The benchmark's last table (its markdown rows) is kept
from each run; a run that fails stops the comparison with its output.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common import ROOT, machine, table

BENCH_DIR = "bench"


@dataclass(frozen=True)
class Side:
    name: str  # "base" or "head"
    tree: Path


@dataclass(frozen=True)
class Rows:
    headers: list[str]
    rows: list[list[str]]


def last_table(output: str) -> Rows:
    """The last markdown table of `output`: its header cells and its rows' cells."""
    block: list[str] = []
    blocks: list[list[str]] = []
    for line in output.splitlines():
        if line.startswith("|"):
            block.append(line)
        elif block:
            blocks.append(block)
            block = []
    if block:
        blocks.append(block)
    tables = [b for b in blocks if len(b) >= 2 and set(b[1]) <= set("|-: ")]
    if not tables:
        raise ValueError("the benchmark printed no markdown table")
    header, _, *rows = tables[-1]
    return Rows(_cells(header), [_cells(row) for row in rows])


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def unpack(revision: str, into: Path, repo: Path = ROOT) -> Path:
    """`revision` of `repo` as files under `into` (git archive), without its history."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", "--format=tar", revision],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def with_bench_of(tree: Path, bench_source: Path) -> None:
    """Replace `tree`'s benchmarks with those of `bench_source`."""
    shutil.rmtree(tree / BENCH_DIR, ignore_errors=True)
    shutil.copytree(
        bench_source / BENCH_DIR, tree / BENCH_DIR, ignore=shutil.ignore_patterns("__pycache__")
    )


def run(side: Side, command: Sequence[str]) -> str:
    """One run of `python -m command...` on `side`'s tree; its standard output."""
    env = {**os.environ, "PYTHONPATH": str(side.tree)}
    done = subprocess.run(
        [sys.executable, "-m", *command],
        cwd=side.tree,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{side.name} run failed ({done.returncode}):\n{done.stdout[-2000:]}\n"
            f"{done.stderr[-4000:]}"
        )
    return done.stdout


def compare(sides: Sequence[Side], command: Sequence[str], pairs: int) -> str:
    """Run `command` on each side in turn, `pairs` times; one table of every run's rows."""
    headers: list[str] | None = None
    rows: list[list[object]] = []
    for pair in range(1, pairs + 1):
        for side in sides:
            got = last_table(run(side, command))
            if headers is None:
                headers = got.headers
            elif got.headers != headers:
                raise ValueError(f"{side.name}'s table has other columns: {got.headers}")
            rows += [[pair, side.name, *row] for row in got.rows]
            print(f"pair {pair} {side.name}: {len(got.rows)} row(s)", file=sys.stderr, flush=True)
    assert headers is not None
    return table(["pair", "tree", *headers], rows)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", required=True, help="the revision before the change")
    parser.add_argument("--head", help="the revision with it (default: the working tree)")
    parser.add_argument("--pairs", type=int, default=3, help="base/head runs, alternated")
    parser.add_argument("command", nargs="+", help="after --: the module and its arguments")
    args = parser.parse_args(argv)
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-pairs-") as tmp:
        head = unpack(args.head, Path(tmp) / "head") if args.head else ROOT
        base = unpack(args.base, Path(tmp) / "base")
        with_bench_of(base, head)
        print(f"pairs: base {args.base}, head {args.head or 'working tree'}; {machine()}")
        print(compare([Side("base", base), Side("head", head)], args.command, args.pairs))


if __name__ == "__main__":
    main()

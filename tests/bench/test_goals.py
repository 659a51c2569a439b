"""bench.goals runs every goal's benchmark with options those benchmarks take, writes each one's
output to its own log, and counts a benchmark that fails as not finished."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.goals import Goal, goals, run

PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
AMQP = "amqp://guest:guest@127.0.0.1:5672/"


def _help(module: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", module, "--help"], check=True, capture_output=True, text=True
    ).stdout


def test_every_goal_passes_options_its_benchmark_takes() -> None:
    chosen = goals(PG, AMQP)
    assert len({goal.name for goal in chosen}) == len(chosen)
    helps: dict[str, str] = {}
    for goal in chosen:
        module, *args = goal.args
        text = helps.setdefault(module, _help(module))
        for option in (arg for arg in args if arg.startswith("-")):
            assert f"{option} " in text or f"{option}\n" in text, (goal.name, option)
        if "--database-url" in args:
            assert args[args.index("--database-url") + 1] == PG
        if "--amqp-url" in args:
            assert args[args.index("--amqp-url") + 1] == AMQP
    assert {goal.name for goal in chosen if PG in goal.args} == {
        "ws_pg", "storm_pg", "nodes", "agi_pg", "ami_pg"
    }  # fmt: skip


def test_a_benchmark_that_fails_is_logged_and_not_counted_as_finished(tmp_path: Path) -> None:
    assert not run(Goal("missing", ("bench.no_such_bench",)), tmp_path, 60)
    assert "No module named bench.no_such_bench" in (tmp_path / "missing.log").read_text()


def test_a_benchmark_that_exits_cleanly_is_counted(tmp_path: Path) -> None:
    assert run(Goal("help", ("bench.goals", "--help")), tmp_path, 60)
    assert "Every goal of issue 9" in (tmp_path / "help.log").read_text()


def test_an_unknown_goal_is_refused() -> None:
    command = [sys.executable, "-m", "bench.goals", "--out", "/nonexistent"]
    command += ["--database-url", PG, "--amqp-url", AMQP, "--only", "ws_sqlite", "nope"]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "no such goal: nope" in result.stderr
    assert not Path("/nonexistent").exists()

"""bench.decider_profile measures several pool sizes in one invocation, taking turns, and
reports each against the first."""

from __future__ import annotations

import subprocess
import sys


def _profile(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.decider_profile", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_pools_take_turns_and_each_has_its_row() -> None:
    result = _profile("-n", "20", "--pool", "20", "60", "--repeat", "2", "--concurrency", "5")
    assert result.returncode == 0, result.stderr
    order = [line.split("pool up to ")[1].split(",")[0] for line in result.stdout.splitlines()
             if "pool up to" in line]  # fmt: skip
    assert order == ["20", "60", "20", "60"]
    rows = [line for line in result.stdout.splitlines() if line.startswith("|")]
    assert "CPU x first pool" in rows[0]
    pools = [row.split("|")[1].strip() for row in rows[2:]]
    assert pools == ["20", "60"]
    assert rows[2].split("|")[-2].strip() == "1.00"


def test_a_pool_too_small_for_the_visitors_is_refused() -> None:
    result = _profile("-n", "20", "--pool", "40", "10")
    assert result.returncode == 2
    assert "--pool must hold -n visitors" in result.stderr

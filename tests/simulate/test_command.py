"""`calltracking simulate` as a user runs it: a file in, JSON or a table out, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from calltracking.simulate.traffic import HEADER


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "calltracking.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "CALLTRACKING_DATABASE_URL": f"sqlite+aiosqlite:///{cwd}/x.db"},
        timeout=120,
        check=False,
    )


def test_simulate_prints_the_counts_as_json_and_set_changes_the_outcome(tmp_path: Path) -> None:
    traffic = tmp_path / "t.csv"
    traffic.write_text(",".join(HEADER) + "\na,0,100,100,https://shop.example/,,1000\n")
    held = cli("simulate", "--traffic", str(traffic), "--pool", "1", cwd=tmp_path)
    assert held.returncode == 0, held.stderr
    result = json.loads(held.stdout)
    for key in ("calls", "tracked", "correct", "by_kind", "pool_peak", "exhausted"):
        assert key in result
    assert result["by_kind"] == {"held": 1} and result["leases_per_hour"] > 0
    cooled = cli(
        "simulate", "--traffic", str(traffic), "--pool", "1", "--set", "hold_s=600", cwd=tmp_path
    )
    assert json.loads(cooled.stdout)["by_kind"] == {"cooled": 1}


def test_generate_then_sweep_prints_a_table(tmp_path: Path) -> None:
    out = tmp_path / "g.csv"
    made = cli(
        "simulate", "--generate", str(out), "--days", "1", "--visits-per-day", "200", cwd=tmp_path
    )
    assert made.returncode == 0, made.stderr
    table = cli(
        "simulate", "--traffic", str(out), "--sweep", "--pools", "2,8", "--policy", "seed",
        "--vary", "hold_s=0,900", cwd=tmp_path,
    )  # fmt: skip
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("| pool | hold_s | calls | tracked | correct")
    assert len(lines) == 2 + 4


def test_bad_input_ends_with_one_line_and_status_2(tmp_path: Path) -> None:
    traffic = tmp_path / "t.csv"
    traffic.write_text(",".join(HEADER) + "\na,0,100,100,,,\nb,0,1,5,,,\n")
    bad_row = cli("simulate", "--traffic", str(traffic), cwd=tmp_path)
    assert bad_row.returncode == 2
    assert bad_row.stderr.strip().endswith(
        "t.csv row 3: start_s <= last_active_s <= end_s does not hold"
    )
    assert len(bad_row.stderr.strip().splitlines()) == 1
    bad_set = cli("simulate", "--traffic", str(traffic), "--set", "nope=1", cwd=tmp_path)
    assert bad_set.returncode == 2
    assert bad_set.stderr.strip() == "calltracking simulate: --set settings.nope: unknown setting"

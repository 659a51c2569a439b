"""`CALLTRACKING_SIGNING_KEY` shorter than 32 bytes stops start-up with one line naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _migrate(tmp_path: Path, key: str) -> subprocess.CompletedProcess[str]:
    env = {
        "CALLTRACKING_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'ct.db'}",
        "CALLTRACKING_SIGNING_KEY": key,
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
    }
    command = [sys.executable, "-m", "calltracking.cli", "--log-level", "WARNING", "migrate"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def test_a_short_signing_key_is_a_one_line_start_up_error(tmp_path: Path) -> None:
    done = _migrate(tmp_path, "short-key")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "CALLTRACKING_SIGNING_KEY" in done.stderr
    assert "short-key" not in done.stderr  # a secret, even a bad one, is not echoed


def test_a_long_signing_key_is_accepted(tmp_path: Path) -> None:
    assert _migrate(tmp_path, "k" * 32).returncode == 0

"""`calltracking token revoke TOKEN_PREFIX`: the token stops authenticating; an unknown prefix is
a one-line error and exit 1."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from calltracking.store.db import Database
from calltracking.store.tokens import authenticate


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "CALLTRACKING_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'ct.db'}",
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
    }
    command = [sys.executable, "-m", "calltracking.cli", "--log-level", "WARNING", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def _authenticates(tmp_path: Path, token: str) -> bool:
    async def check() -> bool:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'ct.db'}")
        try:
            async with db.read() as conn:
                return await authenticate(conn, token, admin_token="") is not None
        finally:
            await db.close()

    return asyncio.run(check())


def test_a_revoked_token_no_longer_authenticates(tmp_path: Path) -> None:
    keep = _cli(tmp_path, "token", "create", "--admin").stdout.strip()
    token = _cli(tmp_path, "token", "create", "--admin").stdout.strip()
    assert _authenticates(tmp_path, token)
    done = _cli(tmp_path, "token", "revoke", token[:12])
    assert done.returncode == 0, done.stderr
    assert token[:12] in done.stdout and token not in done.stdout
    assert not _authenticates(tmp_path, token)
    assert _authenticates(tmp_path, keep)


def test_an_unknown_prefix_is_a_one_line_error(tmp_path: Path) -> None:
    _cli(tmp_path, "migrate")
    done = _cli(tmp_path, "token", "revoke", "ct_nobodymade")
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "no token" in done.stderr

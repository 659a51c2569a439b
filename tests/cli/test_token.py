"""`calltracking token create`: prints a token once, stores only its hash."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from calltracking.store.db import Database
from calltracking.store.schema import tokens
from calltracking.store.tokens import authenticate, hash_token


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "CALLTRACKING_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'ct.db'}",
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "calltracking.cli",
            "--log-level",
            "WARNING",
            "token",
            "create",
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_admin_token_is_printed_and_stored_hashed(tmp_path: Path) -> None:
    done = _run(tmp_path, "--admin")
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token.startswith("ct_")
    assert len(token) > 40

    async def check() -> None:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'ct.db'}")
        try:
            async with db.read() as conn:
                stored = (await conn.execute(sa.select(tokens.c.token_hash))).scalars().all()
                principal = await authenticate(conn, token, admin_token="")
        finally:
            await db.close()
        assert stored == [hash_token(token)]
        assert token not in stored
        assert principal is not None
        assert principal.admin

    asyncio.run(check())


def test_a_token_for_an_unknown_account_is_refused(tmp_path: Path) -> None:
    done = _run(tmp_path, "--account", "nope")
    assert done.returncode == 1
    assert "account nope does not exist" in done.stdout

"""`calltracking split-site` splits a site for an operator, and refuses what it cannot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from calltracking.check import run_checks
from calltracking.config import Config
from calltracking.store.db import Database
from calltracking.store.migrate import migrate
from calltracking.store.sites import get_site
from tests.store.seed import seed_site


def _run(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"CALLTRACKING_DATABASE_URL": db_url}
    return subprocess.run(
        [sys.executable, "-m", "calltracking.cli", "split-site", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


async def test_split_site_sets_the_parts_and_says_what_it_did(tmp_path: Path) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'ct.db'}"
    db = Database(db_url)
    await migrate(db)
    site = await seed_site(db)
    try:
        done = _run(db_url, site.id, "3")
        assert done.returncode == 0, done.stderr
        assert "3 part(s) (was 1)" in done.stdout
        async with db.read() as conn:
            split = await get_site(conn, site.id)
        assert split is not None and split.decision_parts == 3

        refused = _run(db_url, site.id, "40")
        assert refused.returncode == 2
        assert "from 1 to 16" in refused.stdout
        missing = _run(db_url, "no-such-site", "2")
        assert missing.returncode == 1
        assert "no site no-such-site" in missing.stdout
        async with db.read() as conn:
            kept = await get_site(conn, site.id)
        assert kept is not None and kept.decision_parts == 3

        lines: list[str] = []
        await run_checks(Config(database_url=db_url, ami_host="", agi_port=1), lines.append)
        assert "site 'shop'" in "\n".join(lines)
        assert "decided in 3 parts (split-site)" in "\n".join(lines)
    finally:
        await db.close()


def test_split_site_help_says_what_a_split_gives_up() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "calltracking.cli", "split-site", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert "per part" in done.stdout

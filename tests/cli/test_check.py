"""`calltracking check` against the simulated Asterisk and a real database: one line per
check, and a non-zero exit when something is wrong."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from alembic.script import ScriptDirectory

from calltracking.check import run_checks
from calltracking.config import Config
from calltracking.pbxsim import PbxSim, SimConfig
from calltracking.store.db import Database
from calltracking.store.migrate import alembic_config, migrate
from tests.store.seed import seed_site


async def _config(tmp_path: Path, ami_port: int, **changes: object) -> Config:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'ct.db'}"
    db = Database(db_url)
    await migrate(db)
    await seed_site(db, reserve=2)
    await db.close()
    config = Config(
        database_url=db_url,
        ami_host="127.0.0.1",
        ami_port=ami_port,
        ami_username="calltracking",
        ami_secret="calltracking",
        agi_port=1,
    )
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]  # test kwargs of mixed types


async def test_check_reports_each_part_and_fails_on_what_is_down(tmp_path: Path) -> None:
    sim = PbxSim(SimConfig(port=0))
    await sim.start()
    try:
        lines: list[str] = []
        code = await run_checks(await _config(tmp_path, sim.ami_port), lines.append)
    finally:
        await sim.stop()
    text = "\n".join(lines)
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert f"ok   database: reachable, schema revision {head}" in text
    assert "ok   AMI: login as 'calltracking'" in text
    assert "ok   dialplan: trunk context [from-trunk] exists" in text
    assert "site 'shop'" in text
    assert "FAIL FastAGI: 127.0.0.1:1 not reachable" in text
    assert code == 1


async def test_check_names_a_refused_ami_login_and_a_missing_context(tmp_path: Path) -> None:
    sim = PbxSim(SimConfig(port=0))
    await sim.start()
    try:
        lines: list[str] = []
        await run_checks(await _config(tmp_path, sim.ami_port, ami_secret="wrong"), lines.append)
        refused = "\n".join(lines)
        lines.clear()
        other = tmp_path / "b"
        other.mkdir()
        await run_checks(
            await _config(
                other,
                sim.ami_port,
                trunk_contexts=("from-pstn",),
            ),
            lines.append,
        )
        missing = "\n".join(lines)
    finally:
        await sim.stop()
    assert "FAIL AMI: login as 'calltracking' refused" in refused
    assert "FAIL dialplan: trunk context [from-pstn] not found" in missing

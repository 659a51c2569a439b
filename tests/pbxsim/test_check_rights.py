"""`calltracking check --call DID` against the simulated Asterisk: each AMI read right is proven
by the events of one test call, and a right the AMI user lacks is a failure (exit 1)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from calltracking.check import run_checks
from calltracking.config import Config
from calltracking.pbxsim import CallSpec, PbxSim, SimConfig
from calltracking.store.db import Database
from calltracking.store.migrate import migrate
from tests.store.seed import seed_site

DID = "74951110001"


@asynccontextmanager
async def fastagi_port() -> AsyncIterator[int]:
    """A TCP port that accepts (the check only connects to FastAGI)."""

    async def close(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(close, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def check_with_a_test_call(tmp_path: Path, read: str) -> tuple[int, str]:
    """Run the check with `--call DID` against a PBX whose AMI user reads `read`; place the
    test call once the check says it waits. The exit status and the output."""
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'ct.db'}"
    db = Database(db_url)
    await migrate(db)
    await seed_site(db, reserve=2)
    await db.close()
    sim = PbxSim(SimConfig(port=0, speed=50, read=read))
    await sim.start()
    lines: list[str] = []
    try:
        async with fastagi_port() as agi_port:
            config = Config(
                database_url=db_url, ami_host="127.0.0.1", ami_port=sim.ami_port,
                ami_username="calltracking", ami_secret="calltracking", agi_port=agi_port,
            )  # fmt: skip
            check = asyncio.create_task(run_checks(config, lines.append, call_did=DID, wait_s=10))
            async with asyncio.timeout(10):
                while not any("waiting up to" in line for line in lines):  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            placed = await sim.place_call(CallSpec(DID, "+79161234567", talk_s=1))
            code = await check
            await placed.finished
    finally:
        await sim.stop()
    return code, "\n".join(lines)


async def test_a_user_with_every_read_right_passes_with_a_test_call(tmp_path: Path) -> None:
    code, text = await check_with_a_test_call(tmp_path, "call,dialplan,agi")
    for right in ("call", "dialplan", "agi"):
        assert f"ok   AMI read right `{right}`" in text
    assert "FAIL" not in text
    assert code == 0


@pytest.mark.parametrize(
    ("read", "missing"),
    [("call,cdr,agi", ["dialplan"]), ("call,cdr", ["dialplan", "agi"])],
)
async def test_a_user_without_a_read_right_fails_the_check(
    tmp_path: Path, read: str, missing: list[str]
) -> None:
    code, text = await check_with_a_test_call(tmp_path, read)
    for right in ("call", "dialplan", "agi"):
        mark = "FAIL" if right in missing else "ok  "
        assert f"{mark} AMI read right `{right}`" in text
    assert code == 1


async def test_without_a_test_call_an_idle_pbx_proves_nothing_and_fails(tmp_path: Path) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'ct.db'}"
    db = Database(db_url)
    await migrate(db)
    await db.close()
    sim = PbxSim(SimConfig(port=0))
    await sim.start()
    lines: list[str] = []
    try:
        async with fastagi_port() as agi_port:
            config = Config(
                database_url=db_url, ami_host="127.0.0.1", ami_port=sim.ami_port,
                ami_username="calltracking", ami_secret="calltracking", agi_port=agi_port,
            )  # fmt: skip
            code = await run_checks(config, lines.append)
    finally:
        await sim.stop()
    text = "\n".join(lines)
    assert "FAIL AMI read right `dialplan`: not proven" in text
    assert "--call DID" in text
    assert "info AMI read" not in text
    assert code == 1


async def test_no_test_call_within_the_wait_fails_every_right(tmp_path: Path) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'ct.db'}"
    db = Database(db_url)
    await migrate(db)
    await db.close()
    sim = PbxSim(SimConfig(port=0))
    await sim.start()
    lines: list[str] = []
    try:
        config = Config(
            database_url=db_url, ami_host="127.0.0.1", ami_port=sim.ami_port,
            ami_username="calltracking", ami_secret="calltracking",
        )  # fmt: skip
        # A call to another number proves nothing about the test number's rights.
        other = await sim.place_call(CallSpec("74951110002", "+79161234567", talk_s=0.1))
        code = await run_checks(config, lines.append, call_did=DID, wait_s=0.5)
        await other.finished
    finally:
        await sim.stop()
    text = "\n".join(lines)
    assert f"FAIL AMI: no test call to {DID} within 0.5 s" in text
    for right in ("call", "dialplan", "agi"):
        assert f"FAIL AMI read right `{right}`: not proven (no test call)" in text
    assert code == 1

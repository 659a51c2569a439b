"""AMI fail-over on the real PostgreSQL: two `calltracking serve --only ami` processes per
Asterisk, exactly one listening (a session advisory lock keyed by the PBX id). The active one is
SIGKILLed in the middle of calls; the standby takes over, reconciles, and every call is stored
exactly once with its right status."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa

from calltracking.core.kinds import CallStatus
from calltracking.pbxsim import CallSpec, Outcome, PbxSim, PlacedCall, SimConfig
from calltracking.store import schema as t
from calltracking.store.db import Database
from calltracking.store.leadership import Leadership, Work, ami_job
from tests.integration.pbx import until
from tests.store.seed import seed_site

pytestmark = [pytest.mark.postgres]
ACTIVE = "active (lock held)"
SPEED = 2.0  # simulated seconds per wall second


@dataclass
class Node:
    """One `serve --only ami` process and the log lines it wrote so far."""

    proc: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)

    def said(self, text: str) -> int:
        return sum(text in line for line in self.lines)


async def _collect(node: Node) -> None:
    assert node.proc.stderr is not None
    while line := await node.proc.stderr.readline():
        node.lines.append(line.decode(errors="replace"))


@asynccontextmanager
async def nodes(env: dict[str, str], count: int) -> AsyncIterator[list[Node]]:
    started: list[Node] = []
    readers: list[asyncio.Task[None]] = []
    try:
        for _ in range(count):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "calltracking.cli", "serve", "--only", "ami",
                env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            node = Node(proc)
            started.append(node)
            readers.append(asyncio.create_task(_collect(node)))
        try:
            yield started
        except BaseException:
            for node in started:  # what each process logged, to tell why
                print("".join(node.lines[-80:]))
            raise
    finally:
        for node in started:
            if node.proc.returncode is None:
                node.proc.terminate()
            await node.proc.wait()
        await asyncio.gather(*readers, return_exceptions=True)


async def statuses(db: Database, pbx_id: str) -> dict[str, list[str]]:
    """Linkedid -> the state of each stored row of it (one row per call expected): its status
    once ended, else `answered...` or `open`."""
    c = t.calls.c
    async with db.read() as conn:
        rows = await conn.execute(
            sa.select(c.linkedid, c.status, c.answered_at, c.ended_at).where(c.pbx_id == pbx_id)
        )
        out: dict[str, list[str]] = {}
        for linkedid, status, answered_at, ended_at in rows:
            state = str(status) if ended_at else ("answered..." if answered_at else "open")
            out.setdefault(linkedid, []).append(state)
        return out


async def store_shows(
    db: Database, pbx_id: str, check: Callable[[dict[str, list[str]]], bool]
) -> dict[str, list[str]]:
    """Poll the store until `check(statuses)` holds (the processes give no other signal)."""
    async with asyncio.timeout(60):
        while True:
            rows = await statuses(db, pbx_id)
            if check(rows):
                return rows
            await asyncio.sleep(0.05)


async def test_the_standby_takes_over_when_the_active_listener_is_killed(
    pg_db: Database, amqp_url: str
) -> None:
    site = await seed_site(pg_db, reserve=4)
    did = next(iter(site.defaults.values())).removeprefix("+")
    pbx_id = f"failover-{secrets.token_hex(3)}"
    sim = PbxSim(SimConfig(port=0, speed=SPEED, route_context="operators"))
    await sim.start()
    env = {
        **os.environ,
        "CALLTRACKING_DATABASE_URL": pg_db.url,
        "CALLTRACKING_AMQP_URL": amqp_url,
        "CALLTRACKING_AMI_HOST": "127.0.0.1",
        "CALLTRACKING_AMI_PORT": str(sim.ami_port),
        "CALLTRACKING_AMI_USERNAME": "calltracking",
        "CALLTRACKING_AMI_SECRET": "calltracking",
        "CALLTRACKING_PBX_ID": pbx_id,
    }
    expected: dict[str, CallStatus] = {}
    placed: list[PlacedCall] = []

    async def call(spec: CallSpec, status: CallStatus) -> PlacedCall:
        one = await sim.place_call(spec)
        expected[one.linkedid] = status
        placed.append(one)
        return one

    try:
        async with nodes(env, 2) as (first, second):
            await until(lambda: first.said(ACTIVE) + second.said(ACTIVE) == 1, within_s=30)
            await until(lambda: sim.ami_logins == 1, within_s=30)
            active, standby = (first, second) if first.said(ACTIVE) else (second, first)
            # Up across the kill: one answered and talking, one still ringing.
            talking = await call(CallSpec(did, "+79161234567", talk_s=30), CallStatus.ANSWERED)
            ringing = await call(
                CallSpec(did, "+79031112233", Outcome.MISSED, ring_s=20), CallStatus.MISSED
            )
            await until(lambda: talking.state == "answered", within_s=30)
            await store_shows(
                pg_db, pbx_id, lambda r: (r.get(talking.linkedid), r.get(ringing.linkedid))
                == (["answered..."], ["open"]),
            )  # fmt: skip
            assert sim.calls[talking.linkedid].state == "answered"  # still talking
            assert (sim.ami_logins, standby.said(ACTIVE)) == (1, 0)  # exactly one listened
            active.proc.send_signal(signal.SIGKILL)
            await active.proc.wait()
            # Starts while nobody listens (or just as the standby takes over).
            await call(CallSpec(did, "+79265554433", ring_s=2, talk_s=10), CallStatus.ANSWERED)
            await until(lambda: standby.said(ACTIVE) == 1 and sim.ami_logins == 2, within_s=30)
            await call(CallSpec(did, "+79099876543", Outcome.BUSY), CallStatus.BUSY)
            await asyncio.gather(*(p.finished for p in placed))
            rows = await store_shows(
                pg_db, pbx_id, lambda r: set(r) == set(expected)
                and all(s not in (["open"], ["answered..."]) for s in r.values()),
            )  # fmt: skip
            assert standby.proc.returncode is None
    finally:
        await sim.stop()
    assert rows == {linkedid: [str(status)] for linkedid, status in expected.items()}


async def test_one_process_holds_the_lock_and_the_next_one_takes_over(pg_url: str) -> None:
    pbx_id = f"lock-{secrets.token_hex(3)}"
    first = Leadership(pg_url, ami_job(pbx_id), f"AMI {pbx_id}", poll_s=0.05)
    second = Leadership(pg_url, ami_job(pbx_id), f"AMI {pbx_id}", poll_s=0.05)
    working: list[str] = []

    def worker(name: str) -> Work:
        async def work() -> None:
            working.append(name)
            await asyncio.Event().wait()  # listens until cancelled

        return work

    a = asyncio.create_task(first.run(worker("first")))
    await until(lambda: first.active)
    b = asyncio.create_task(second.run(worker("second")))
    await asyncio.sleep(0.3)  # several polls of the standby: it must stay out
    assert (working, second.active) == (["first"], False)
    a.cancel()  # the active one stops: its lock connection closes
    await until(lambda: second.active)
    # `active` is set just before the work's task runs: wait for the work itself.
    await until(lambda: len(working) == 2)
    assert working == ["first", "second"]
    b.cancel()
    await asyncio.gather(a, b, return_exceptions=True)


async def test_on_sqlite_the_listener_runs_without_a_lock() -> None:
    leadership = Leadership("sqlite+aiosqlite:///x.db", ami_job("pbx1"), "AMI pbx1")
    ran: list[bool] = []

    async def work() -> None:
        ran.append(True)

    await leadership.run(work)
    assert ran == [True] and leadership.active and not leadership.needs_lock

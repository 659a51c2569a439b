"""bench.common.local_postgres_cpu_seconds counts what the PostgreSQL server on this host spends,
backends that have exited included (agi_bench's "database CPU ms/dialogue")."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy.engine import make_url

from bench.common import local_postgres_cpu_seconds

pytestmark = pytest.mark.postgres


async def test_a_query_on_a_connection_since_closed_is_counted(pg_url: str) -> None:
    before = local_postgres_cpu_seconds()
    assert before is not None
    conn = await asyncpg.connect(
        make_url(pg_url).set(drivername="postgresql").render_as_string(False)
    )
    try:
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        plan = await conn.fetchval(
            "EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*) FROM generate_series(1, 3000000)"
        )
    finally:
        await conn.close()
    for _ in range(1000):  # its time is now the postmaster's reaped children's
        if not Path(f"/proc/{backend}").exists():
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail(f"backend {backend} still runs 10 s after its connection closed")
    after = local_postgres_cpu_seconds()
    assert after is not None
    executed_s = (json.loads(plan) if isinstance(plan, str) else plan)[0]["Execution Time"] / 1000
    # The query's CPU is at most its time on the server, and most of it on any host that runs it.
    assert after - before >= executed_s / 2

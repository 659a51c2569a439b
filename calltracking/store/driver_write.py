"""Updates and deletes of a group commit straight through asyncpg, compiled and converted once.

Why: on PostgreSQL a visitor batch runs on a kept connection (kept_transactions.py), yet a tab's
close still wrote its lease's end, its number's release, its display, its tab and its visitor
through SQLAlchemy's async layer, an execution context and a greenlet switch per statement:
with few closes in flight a close cost three times a new visitor's CPU (docs/benchmarks.md).

Rules:
- Each statement is a module-level constant (the compiled plan is cached per statement object):
  its SQL text, the order of its parameters and their bind processors, SQLAlchemy's own for each
  column type, so values are bound exactly as `Connection.execute` binds them.
- Rows name every parameter; there are no defaults to fall back on.
- One row runs as one `execute`, several as one `executemany` (asyncpg sends them in one round
  trip). Rowcounts are not reported: a statement whose rowcount matters stays on SQLAlchemy.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Dialect

from calltracking.store.driver_select import Convert, compiled_binds


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    binds: tuple[tuple[str, Convert | None], ...]  # in the SQL's positional order


async def execute_many_on(
    driver: Any, dialect: Dialect, statement: Any, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Run `statement` once per row on the asyncpg connection `driver` (of `dialect`'s)."""
    if not rows:
        return
    plan = _plan(dialect, statement)
    binds = plan.binds
    args = [tuple(row[n] if b is None else b(row[n]) for n, b in binds) for row in rows]
    if len(args) == 1:
        await driver.execute(plan.sql, *args[0])
    else:
        await driver.executemany(plan.sql, args)


@functools.lru_cache(maxsize=64)
def _plan(dialect: Dialect, statement: Any) -> _Plan:
    sql, binds = compiled_binds(dialect, statement)  # the compile driver_select.py reads with
    return _Plan(sql=sql, binds=tuple((name, bind) for name, bind, _value in binds))

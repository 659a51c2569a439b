"""Selects through the driver's cursor, compiled and converted once: the call-start batch's reads.

Why: a batch of call starts runs about ten selects; through `Connection.execute` each paid
SQLAlchemy Core's per-statement work (cache key, execution context, result metadata, a row
object per row), as much CPU as the statement itself. Here each (statement, dialect) is
compiled once into its SQL text, the order of its parameters with their bind processors and a
row type with one result processor per column; a call binds, runs the cursor and converts.

Rules:
- Values bound and read are exactly what `Connection.execute` would bind and return: the same
  type processors (SQLAlchemy's own, cached per column), so a `UtcDateTime` reads back as an
  aware UTC datetime and a JSON column as its Python value.
- Rows are named tuples: `row.column` as on SQLAlchemy's rows (no `_mapping`).
- The statement runs in the connection's transaction, begun first as `execute` would (on
  SQLite that is what issues BEGIN: the batch's reads see one snapshot).
- A driver error is raised as SQLAlchemy's wrapper of it (`OperationalError`, ...), as
  `execute` raises it, so callers' handling (sqlite_inline.Busy) is the same. One that says
  the connection is gone invalidates it, as `execute` would: otherwise it went back to the
  pool and failed whoever took it next (with no COMMIT after the reads, nothing else on
  the connection would notice; call_batches.py).
- Only statements whose selected columns are known (`select(...)`, `text(...).columns(...)`).
"""

from __future__ import annotations

import functools
from collections import namedtuple
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

Convert = Callable[[Any], Any]


@dataclass(slots=True)
class _Plan:
    sql: str
    # In the SQL's positional order: name, bind processor, the value when `params` lacks it
    # (a bound literal of the statement's own, such as SQLite's `OFFSET ?` after a LIMIT)
    binds: tuple[tuple[str, Convert | None, Any], ...]
    row: Callable[..., Any]
    types: tuple[Any, ...]  # the selected columns' types
    # One per column, from the first cursor's description (some drivers' processors depend
    # on the type code it reports, as in SQLAlchemy's own results); None until then.
    processors: tuple[Convert | None, ...] | None = None


def select_rows(conn: Connection, statement: Any, params: Mapping[str, Any]) -> list[Any]:
    """The rows of `statement` with `params`, as named tuples."""
    dialect = conn.dialect
    plan = _plan(dialect, statement)
    args = _args(plan, params)
    if not conn.in_transaction():
        conn.begin()
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(plan.sql, args)
        raw = cursor.fetchall()
        processors = plan.processors
        if processors is None:
            processors = plan.processors = _processors(dialect, plan, cursor.description)
    except dialect.loaded_dbapi.Error as exc:
        gone = dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor)
        error = sa.exc.DBAPIError.instance(
            plan.sql,
            args,
            exc,
            dialect.loaded_dbapi.Error,
            connection_invalidated=gone,
            dialect=dialect,
        )
        if gone:
            conn.invalidate(error)
        raise error from exc
    finally:
        cursor.close()
    return _rows(plan, processors, raw)


async def fetch_rows(
    driver: Any, dialect: Dialect, statement: Any, params: Mapping[str, Any]
) -> list[Any]:
    """`select_rows` on an asyncpg connection (`driver`) of `dialect`'s: the same SQL, binds and
    rows. Its errors are asyncpg's own."""
    plan = _plan(dialect, statement)
    raw = await driver.fetch(plan.sql, *_args(plan, params))
    processors = plan.processors
    if processors is None:  # asyncpg's results carry no DB-API description: by type alone
        processors = tuple(t._cached_result_processor(dialect, None) for t in plan.types)
    return _rows(plan, processors, raw)


def _args(plan: _Plan, params: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(
        value if bind is None else bind(value)
        for name, bind, default in plan.binds
        for value in (params.get(name, default),)
    )


def _rows(plan: _Plan, processors: tuple[Convert | None, ...], raw: Any) -> list[Any]:
    row = plan.row
    if not any(processors):
        return [row(*r) for r in raw]
    return [
        row(*(v if p is None else p(v) for p, v in zip(processors, r, strict=True))) for r in raw
    ]


def compiled_binds(
    dialect: Dialect, statement: Any
) -> tuple[str, tuple[tuple[str, Convert | None, Any], ...]]:
    """`statement`'s SQL for `dialect` and its parameters in positional order: each one's name,
    SQLAlchemy's bind processor for its type, and its bound value when the statement has one.
    For a positional parameter style only (the drivers this module and driver_write.py serve)."""
    compiled = statement.compile(dialect=dialect)
    if not compiled.positional:
        raise ValueError(f"no driver statements for the {dialect.paramstyle} parameter style")
    binds = tuple(
        (
            name,
            compiled.binds[name].type._cached_bind_processor(dialect),
            compiled.binds[name].effective_value,
        )
        for name in compiled.positiontup or ()
    )
    return compiled.string, binds


@functools.lru_cache(maxsize=128)
def _plan(dialect: Dialect, statement: Any) -> _Plan:
    sql, binds = compiled_binds(dialect, statement)
    columns = list(statement.selected_columns)
    if not columns:
        raise ValueError("a driver select needs its columns named (text(...).columns(...))")
    row = namedtuple("Row", [c.key for c in columns])  # type: ignore[misc]
    return _Plan(sql=sql, binds=binds, row=row, types=tuple(c.type for c in columns))


def _processors(dialect: Dialect, plan: _Plan, description: Any) -> tuple[Convert | None, ...]:
    if len(description) != len(plan.types):
        raise ValueError(f"{len(description)} columns where {len(plan.types)} were named")
    return tuple(
        type_._cached_result_processor(dialect, column[1])
        for type_, column in zip(plan.types, description, strict=True)
    )

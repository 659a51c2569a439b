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
- An update by key (`KeyedUpdate`) of SET_BASED_FROM rows or more is one statement instead
  (`UPDATE ... FROM unnest(...)`): executemany still runs the statement once per row in
  PostgreSQL, and a burst of closes (a balancer restart drops every socket of a node at once)
  cost the database as much per close as a new visitor. It leaves what the rows one after the
  other would: the last row per key wins, or the first under `only_null`. String arrays are
  `text[]`, so a value too long for its column fails as it would per row.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from calltracking.store.bulk_insert import bind_converter, element_type
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


@dataclass(frozen=True)  # no slots: `per_row` is built once and kept on the instance
class KeyedUpdate:
    """An UPDATE of the rows whose `key` column equals a parameter, setting columns from
    parameters (`sets`: column, parameter); with `only_null`, only rows where that column is
    still NULL. `per_row` is the statement run once per row; `update_rows_on` runs many rows as
    one statement."""

    table: sa.Table
    key: str
    key_param: str
    sets: tuple[tuple[str, str], ...]
    only_null: str | None = None

    @functools.cached_property
    def per_row(self) -> Any:
        c = self.table.c
        statement = self.table.update().where(c[self.key] == sa.bindparam(self.key_param))
        if self.only_null is not None:
            statement = statement.where(c[self.only_null].is_(None))
        return statement.values({c[column]: sa.bindparam(param) for column, param in self.sets})


async def update_rows_on(
    driver: Any, dialect: Dialect, update: KeyedUpdate, rows: Sequence[Mapping[str, Any]]
) -> None:
    """`update.per_row` for each row, in order, on the asyncpg connection `driver`: from
    SET_BASED_FROM rows on, as one `UPDATE ... FROM unnest(...)` statement."""
    if len(rows) < SET_BASED_FROM:
        await execute_many_on(driver, dialect, update.per_row, rows)
        return
    sql, converts = _set_based(dialect, update)
    # One row per key, as the rows one after the other would have left it: the last one's
    # values; under `only_null` the first one's (it fills the column; the later ones then
    # find it filled and change nothing).
    by_key: dict[Any, Mapping[str, Any]] = {}
    for row in rows:
        if update.only_null is None or row[update.key_param] not in by_key:
            by_key[row[update.key_param]] = row
    kept = list(by_key.values())
    params = [update.key_param, *(param for _column, param in update.sets)]
    await driver.execute(
        sql,
        *(
            [convert(row[param]) for row in kept]
            for param, convert in zip(params, converts, strict=True)
        ),
    )


# Below this many rows a batch's statement runs per row: PostgreSQL plans a join afresh for each
# set-based statement, which costs more than a few executions of a prepared one.
SET_BASED_FROM = 8


@functools.lru_cache(maxsize=64)
def _set_based(dialect: Dialect, update: KeyedUpdate) -> tuple[str, tuple[Convert, ...]]:
    table, quote = update.table, dialect.identifier_preparer.quote
    columns = [update.key, *(column for column, _param in update.sets)]
    arrays = ", ".join(
        f"${i}::{element_type(dialect, table.c[column].type)}[]"
        for i, column in enumerate(columns, start=1)
    )
    names = ", ".join(f"v{i}" for i in range(len(columns)))
    sets = ", ".join(f"{quote(column)} = u.v{i}" for i, column in enumerate(columns) if i)
    where = f"{quote(table.name)}.{quote(update.key)} = u.v0"
    if update.only_null is not None:
        where += f" AND {quote(table.name)}.{quote(update.only_null)} IS NULL"
    sql = f"UPDATE {quote(table.name)} SET {sets} FROM unnest({arrays}) AS u({names}) WHERE {where}"
    return sql, tuple(bind_converter(dialect, table.c[column].type) for column in columns)


async def delete_keys_on(
    driver: Any, dialect: Dialect, table: sa.Table, key: str, keys: Sequence[Any]
) -> None:
    """DELETE the rows of `table` whose `key` column is one of `keys`, in one statement."""
    if not keys:
        return
    quote = dialect.identifier_preparer.quote
    cast = element_type(dialect, table.c[key].type)
    convert = bind_converter(dialect, table.c[key].type)
    await driver.execute(
        f"DELETE FROM {quote(table.name)} WHERE {quote(key)} = ANY($1::{cast}[])",
        [convert(k) for k in keys],
    )

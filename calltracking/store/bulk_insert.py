"""Many rows into one table through the driver's executemany, values converted here.

The hot paths (a group commit of visitors, a batch of call starts) insert hundreds of rows a
second; SQLAlchemy's per-row parameter processing (`construct_params` and a chain of bind
processors per datetime) was a third of a batch's Python time. Here each (dialect, table,
columns) has one statement text and one converter per column, built once; a row costs a
tuple. What SQLAlchemy would store is kept exactly: datetimes as UtcDateTime stores them
(SQLite: naive UTC text with microseconds, so text comparisons in SQL still order them; PostgreSQL:
aware UTC), JSON as `json.dumps` text, booleans as the dialect's. Columns missing from the rows
take their scalar Python default; a column whose default is computed must be given.

`insert_tables` writes several tables' rows in one round trip on PostgreSQL: one statement of
data-modifying CTEs, each inserting from its columns' arrays (`unnest`). Foreign keys between
them hold, as PostgreSQL checks them at the end of the statement. String arrays are passed as
`text[]`, so a value too long for its column fails the insert as a plain insert would, rather
than being cut by an explicit cast to `varchar(n)`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from calltracking.store.schema import UtcDateTime, outbox

Convert = Callable[[Any], Any]
# Execution option naming the table a driver-level insert writes to: what watches commits for
# outbox rows (outbox_watch.py) cannot read it from a compiled statement here.
INSERTS_INTO = "calltracking_inserts_into"


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    fields: tuple[tuple[str, Convert], ...]  # the rows' columns, in the statement's order
    defaults: tuple[Any, ...]  # then the values of the columns the rows lack


async def insert_rows(
    conn: AsyncConnection, table: sa.Table, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Insert `rows` (all naming the same columns) with one executemany."""
    if not rows:
        return
    sql, params = _statement(conn.dialect, table, rows)
    await conn.exec_driver_sql(sql, params, execution_options={INSERTS_INTO: table.name})


async def insert_rows_on(
    driver: Any, dialect: Dialect, table: sa.Table, rows: Sequence[Mapping[str, Any]]
) -> None:
    """`insert_rows` on an asyncpg connection of `dialect`'s (PostgreSQL): the same statement
    and values, one `executemany`."""
    if not rows:
        return
    sql, params = _statement(dialect, table, rows)
    await driver.executemany(sql, params)


def insert_rows_now(conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """`insert_rows` on a synchronous connection (run_sync, or SQLite on the loop's thread)."""
    if not rows:
        return
    sql, params = _statement(conn.dialect, table, rows)
    conn.exec_driver_sql(sql, params, execution_options={INSERTS_INTO: table.name})


def _statement(
    dialect: Dialect, table: sa.Table, rows: Sequence[Mapping[str, Any]]
) -> tuple[str, list[tuple[Any, ...]]]:
    plan = _plan(dialect, table, tuple(rows[0]))
    fields, defaults = plan.fields, plan.defaults
    return plan.sql, [
        (*(convert(row[name]) for name, convert in fields), *defaults) for row in rows
    ]


# A data-modifying statement that may ride along with the inserts (`insert_tables`): its text
# with `{}` for each parameter (driver_sql.py), and those parameters (ids, integers).
Also = tuple[str, tuple[Any, ...]]


async def insert_tables(
    conn: AsyncConnection,
    tables: Sequence[tuple[sa.Table, Sequence[Mapping[str, Any]]]],
    also: Also | None = None,
    driver: Any = None,
) -> bool:
    """Insert each table's rows (all of a table's naming the same columns), in the given order:
    one statement on PostgreSQL, an executemany per table elsewhere. On PostgreSQL, `also`
    joins that statement as one more data-modifying CTE (run exactly once, whatever the rest
    reads); True when it did, else the caller runs it. `driver`: `conn`'s asyncpg connection,
    to run it on (`insert_tables_on`)."""
    if driver is not None:
        return await insert_tables_on(driver, conn.dialect, tables, also)
    tables = [(table, rows) for table, rows in tables if rows]
    if len(tables) < 2 or conn.dialect.name != "postgresql":
        for table, rows in tables:
            await insert_rows(conn, table, rows)
        return False
    sql, params, into = _tables_statement(conn.dialect, tables, also)
    await conn.exec_driver_sql(sql, params, execution_options={INSERTS_INTO: into})
    return also is not None


def insert_tables_now(
    conn: Connection, tables: Sequence[tuple[sa.Table, Sequence[Mapping[str, Any]]]]
) -> None:
    """`insert_tables` (without `also`) on a synchronous connection."""
    tables = [(table, rows) for table, rows in tables if rows]
    if len(tables) < 2 or conn.dialect.name != "postgresql":
        for table, rows in tables:
            insert_rows_now(conn, table, rows)
        return
    sql, params, into = _tables_statement(conn.dialect, tables, None)
    conn.exec_driver_sql(sql, params, execution_options={INSERTS_INTO: into})


async def insert_tables_on(
    driver: Any,
    dialect: Dialect,
    tables: Sequence[tuple[sa.Table, Sequence[Mapping[str, Any]]]],
    also: Also | None = None,
) -> bool:
    """`insert_tables` on an asyncpg connection of `dialect`'s (PostgreSQL): one statement, the
    same values (`also` folded in when some table has rows: True). Nothing tells the commit
    watchers (outbox_watch.py): the caller does."""
    tables = [(table, rows) for table, rows in tables if rows]
    if not tables:
        return False
    sql, params, _into = _tables_statement(dialect, tables, also)
    await driver.execute(sql, *params)
    return also is not None


def _tables_statement(
    dialect: Dialect,
    tables: Sequence[tuple[sa.Table, Sequence[Mapping[str, Any]]]],
    also: Also | None,
) -> tuple[str, tuple[Any, ...], str]:
    """The one statement of `insert_tables` on PostgreSQL, its parameters and the table its
    commit watchers are told it wrote (outbox when it is one of them)."""
    plan = _tables_plan(
        dialect,
        tuple((table, tuple(rows[0])) for table, rows in tables),
        also[0] if also else None,
    )
    params: list[Any] = []
    for (_table, rows), (fields, defaults) in zip(tables, plan.tables, strict=True):
        params += [
            [row[name] for row in rows]  # most columns: not a call per value
            if convert is _same
            else [convert(row[name]) for row in rows]
            for name, convert in fields
        ]
        params += defaults
    if also:
        params += also[1]
    names = {table.name for table, _ in tables}
    into = outbox.name if outbox.name in names else next(iter(names))
    return plan.sql, tuple(params), into


@dataclass(frozen=True, slots=True)
class _TablesPlan:
    sql: str
    tables: tuple[tuple[tuple[tuple[str, Convert], ...], tuple[Any, ...]], ...]


@functools.lru_cache(maxsize=64)
def _tables_plan(
    dialect: Dialect, tables: tuple[tuple[sa.Table, tuple[str, ...]], ...], also: str | None
) -> _TablesPlan:
    quote = dialect.identifier_preparer.quote
    inserts, parts = [], []
    n = 0
    for table, given in tables:
        plan = _plan(dialect, table, given)
        columns = [table.c[name] for name in given]
        defaults = _defaulted(table, given)
        arrays = []
        for column in columns:
            n += 1
            arrays.append(f"${n}::{element_type(dialect, column.type)}[]")
        scalars = []
        for column in defaults:
            n += 1
            scalars.append(f"${n}::{element_type(dialect, column.type)}")
        names = ", ".join(quote(c.name) for c in columns + defaults)
        picks = ", ".join(["u.*", *scalars])
        inserts.append(
            f"INSERT INTO {quote(table.name)} ({names}) "
            f"SELECT {picks} FROM unnest({', '.join(arrays)}) AS u"
        )
        parts.append((plan.fields, plan.defaults))
    heads = inserts[:-1]
    if also is not None:
        heads.append(also.format(*(f"${n + i}" for i in range(1, also.count("{}") + 1))))
    ctes = ", ".join(f"i{i} AS ({sql})" for i, sql in enumerate(heads))
    sql = f"WITH {ctes} {inserts[-1]}" if heads else inserts[-1]
    return _TablesPlan(sql=sql, tables=tuple(parts))


def element_type(dialect: Dialect, column_type: Any) -> str:
    """The SQL type a column's values are passed as (text for every string, see above)."""
    if isinstance(column_type, sa.String):
        return "TEXT"
    return str(column_type.compile(dialect=dialect))


def _defaulted(table: sa.Table, given: tuple[str, ...]) -> list[sa.Column[Any]]:
    """The columns the rows lack that take a scalar Python default, in the table's order."""
    defaults = []
    for column in table.c:
        if column.key in given or column.autoincrement is True:
            continue
        if column.default is None:
            continue
        if not getattr(column.default, "is_scalar", False):
            raise ValueError(f"{table.name}.{column.key} has a computed default: give it")
        defaults.append(column)
    return defaults


@functools.lru_cache(maxsize=256)
def _plan(dialect: Dialect, table: sa.Table, given: tuple[str, ...]) -> _Plan:
    unknown = set(given) - set(table.c.keys())
    if unknown:
        raise ValueError(f"{table.name} has no column {sorted(unknown)}")
    defaults = _defaulted(table, given)
    columns = [table.c[name] for name in given] + defaults
    quote = dialect.identifier_preparer.quote
    if dialect.paramstyle == "qmark":
        marks = ", ".join("?" for _ in columns)
    elif dialect.paramstyle in ("numeric_dollar", "format"):
        marks = ", ".join(
            f"${i}" if dialect.paramstyle == "numeric_dollar" else "%s"
            for i in range(1, len(columns) + 1)
        )
    else:
        raise ValueError(f"no bulk insert for the {dialect.paramstyle} parameter style")
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(c.name) for c in columns)}) "
        f"VALUES ({marks})"
    )
    return _Plan(
        sql=sql,
        fields=tuple((name, bind_converter(dialect, table.c[name].type)) for name in given),
        defaults=tuple(
            bind_converter(dialect, c.type)(c.default.arg)  # type: ignore[union-attr]
            for c in defaults
        ),
    )


def bind_converter(dialect: Dialect, column_type: Any) -> Convert:
    """A column's value as this module binds it (what SQLAlchemy would store)."""
    sqlite = dialect.name == "sqlite"
    if isinstance(column_type, UtcDateTime):
        return _sqlite_moment if sqlite else _aware_moment
    if isinstance(column_type, sa.JSON):
        return json.dumps
    if isinstance(column_type, sa.Boolean) and sqlite:
        return _sqlite_flag
    return _same


def _utc(value: datetime) -> datetime:
    if value.tzinfo is UTC:  # most are: no new object
        return value
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the store")
    return value.astimezone(UTC)


def _sqlite_moment(value: datetime | None) -> str | None:
    # SQLAlchemy's SQLite DATETIME text: always six fractional digits.
    if value is None:
        return None
    return _utc(value).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def _aware_moment(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)


def _sqlite_flag(value: bool | None) -> int | None:
    return None if value is None else int(value)


def _same(value: Any) -> Any:
    return value

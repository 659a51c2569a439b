"""`column IN (values)` that keeps one statement text whatever the number of values.

SQLAlchemy renders `in_()` with one placeholder per value, so every batch size is a new
statement: on PostgreSQL asyncpg prepares each new text again (a group commit's
`UPDATE ... WHERE id IN (...)` cost ~10 ms a batch, most of it planning). There the list goes
as one array parameter (`= ANY($1)`); SQLite has no arrays and compiles statements cheaply, so
it keeps `IN`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection


def one_of(conn: AsyncConnection, column: sa.ColumnElement[Any], values: Collection[Any]) -> Any:
    """A clause true where `column` equals one of `values`."""
    ordered = sorted(values)
    if conn.dialect.name == "postgresql":
        array = sa.bindparam(None, ordered, type_=postgresql.ARRAY(column.type))
        return column == sa.any_(array)
    return column.in_(ordered)

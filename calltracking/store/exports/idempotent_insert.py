"""INSERT .. ON CONFLICT DO NOTHING on PostgreSQL and SQLite alike.

Rule: a row already present (by `keys`) is left as it is and counts 0; a new row counts 1.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection


async def insert_ignoring_duplicates(
    conn: AsyncConnection, table: sa.Table, values: dict[str, Any], keys: list[str]
) -> int:
    """INSERT .. ON CONFLICT DO NOTHING on either engine; 1 when the row was new."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(**values).on_conflict_do_nothing(index_elements=keys)
    return (await conn.execute(statement)).rowcount

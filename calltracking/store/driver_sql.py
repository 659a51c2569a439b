"""Fixed statement texts run through the driver (`exec_driver_sql`), for the statements every
group commit runs: building and compiling SQLAlchemy expressions for them (the compiled cache's
key, the parameters' processing) was a visible part of a batch's CPU in a profile of
`bench.ws_bench`.

A template writes `{}` for each parameter; `driver_text` gives it in the connection's driver's
own style. Only for statements whose parameters and results need no type processing (ids,
integers): a datetime or JSON goes through SQLAlchemy, or through store/bulk_insert.py.
"""

from __future__ import annotations

import functools

from sqlalchemy.ext.asyncio import AsyncConnection


def driver_text(conn: AsyncConnection, template: str) -> str:
    return _text(template, conn.dialect.paramstyle)


def asyncpg_text(template: str) -> str:
    """The template for an asyncpg connection itself ($1, $2, ...)."""
    return _text(template, "numeric_dollar")


@functools.lru_cache(maxsize=64)
def _text(template: str, paramstyle: str) -> str:
    n = template.count("{}")
    if paramstyle == "qmark":
        marks = ["?"] * n
    elif paramstyle == "numeric_dollar":
        marks = [f"${i}" for i in range(1, n + 1)]
    elif paramstyle == "format":
        marks = ["%s"] * n
    else:
        raise ValueError(f"no fixed statements for the {paramstyle} parameter style")
    return template.format(*marks)

"""Database fixtures: a migrated SQLite file per test, a clean schema on the real PostgreSQL."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from calltracking.store.db import Database
from calltracking.store.migrate import migrate


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'test.db'}")
    await migrate(db)
    yield db
    await db.close()


@pytest.fixture
async def pg_db(pg_url: str) -> AsyncIterator[Database]:
    """A clean schema on the session's PostgreSQL database for each test."""
    import sqlalchemy as sa

    db = Database(pg_url)
    async with db.engine.begin() as conn:
        await conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        await conn.execute(sa.text("CREATE SCHEMA public"))
    await migrate(db)
    yield db
    await db.close()


@pytest.fixture(params=["sqlite", "postgres"])
def any_db(request: pytest.FixtureRequest) -> Database:
    name = "sqlite_db" if request.param == "sqlite" else "pg_db"
    db: Database = request.getfixturevalue(name)
    return db

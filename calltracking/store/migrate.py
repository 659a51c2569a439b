"""Create or upgrade the schema with Alembic (`calltracking migrate`, and on `serve` start)."""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.engine import Connection

from calltracking.store.db import Database

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(connection: Connection | None = None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


async def migrate(db: Database) -> None:
    def upgrade(sync_conn: Connection) -> None:
        command.upgrade(alembic_config(sync_conn), "head")

    async with db.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # Several nodes may start at once: one migrates, the others wait and find it done.
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(7402519)"))
        await conn.run_sync(upgrade)
        await conn.commit()
    log.info("database schema is up to date (%s)", db.engine.url.render_as_string())

"""sites: a busy site's pool split into parts that different nodes decide

One node decides every change of a site, and one busy site could not use a second node
(docs/architecture.md, "Several nodes"). `sites.decision_parts` (set by `calltracking
split-site`, 1 for every site until then) splits its pool, its visitors and its leases into
that many parts; each part is decided like a site of its own, under its own lock and with its
own version and recent changes in `site_parts`, so two parts' batches never wait for each other.

PostgreSQL: `calltracking_lock_part(site_key, part_key, site, part)` takes the site's
transaction-scoped advisory lock SHARED (`split-site` and an unsplit site's batch take it
exclusively), then the part's exclusively, and returns both versions, read after the locks
are granted (a volatile PL/pgSQL function, as `calltracking_lock_site`).

Revision ID: 0010a
Revises: 0009a
"""

import sqlalchemy as sa
from alembic import op

revision = "0010a"
down_revision = "0009a"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sites") as batch:
        batch.add_column(
            sa.Column("decision_parts", sa.Integer(), nullable=False, server_default="1")
        )
    op.create_table(
        "site_parts",
        sa.Column("site_id", sa.String(40), sa.ForeignKey("sites.id"), primary_key=True),
        sa.Column("part", sa.Integer(), primary_key=True),
        sa.Column("state_version", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("recent_changes", sa.Text(), nullable=True),
    )
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION calltracking_lock_part(
            site_key bigint, part_key bigint, site text, part_no integer
        ) RETURNS integer[]
        LANGUAGE plpgsql VOLATILE AS $$
        BEGIN
            PERFORM pg_advisory_xact_lock_shared(site_key);
            PERFORM pg_advisory_xact_lock(part_key);
            RETURN ARRAY[
                (SELECT state_version FROM sites WHERE id = site),
                COALESCE(
                    (SELECT state_version FROM site_parts WHERE site_id = site AND part = part_no),
                    0
                )
            ];
        END $$
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION calltracking_lock_part(bigint, bigint, text, integer)")
    op.drop_table("site_parts")
    with op.batch_alter_table("sites") as batch:
        batch.drop_column("decision_parts")

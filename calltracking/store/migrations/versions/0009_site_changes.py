"""sites: the recent changes of a site's state, for a node to catch up on instead of reloading

A node deciding for a site from memory reloaded the whole site whenever another node had
written it since its own last batch: with two nodes serving one site's tabs, every batch did.
Each batch now also writes, with its version bump, which numbers and visitors its last few
batches changed (`[[version, [numbers], [visitors]], ...]`, JSON); a node a few versions
behind reloads just those. A version missing from the list (an operator's change, or more
batches than the list keeps) still means a whole reload.

Revision ID: 0009a
Revises: 0008a
"""

import sqlalchemy as sa
from alembic import op

revision = "0009a"
down_revision = "0008a"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sites") as batch:
        batch.add_column(sa.Column("recent_changes", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sites") as batch:
        batch.drop_column("recent_changes")

"""deciders: site state version, lease address

Revision ID: 0005a
Revises: 0002a
"""

import sqlalchemy as sa
from alembic import op

revision = "0005a"
down_revision = "0002a"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sites") as batch:
        batch.add_column(
            sa.Column("state_version", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("leases") as batch:
        batch.add_column(sa.Column("address", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("leases") as batch:
        batch.drop_column("address")
    with op.batch_alter_table("sites") as batch:
        batch.drop_column("state_version")

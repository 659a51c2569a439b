"""dashboard sessions: a sign-in that survives new tabs (HttpOnly cookie, server-side row)

Revision ID: 0004a
Revises: 0003a
"""

import sqlalchemy as sa
from alembic import op

import calltracking.store.schema

revision = "0004a"
down_revision = "0003a"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dashboard_sessions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at", calltracking.store.schema.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "expires_at", calltracking.store.schema.UtcDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dashboard_sessions")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_dashboard_sessions_secret_hash")),
    )
    op.create_index(
        op.f("ix_dashboard_sessions_token_hash"), "dashboard_sessions", ["token_hash"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_dashboard_sessions_token_hash"), table_name="dashboard_sessions")
    op.drop_table("dashboard_sessions")

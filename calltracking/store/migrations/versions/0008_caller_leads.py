"""calls: a partial index on the leads, by (account_id, caller, started_at)

A call start decides `lead` from its caller's leads in the call's month. With only the
(account_id, caller) index both SQLite and PostgreSQL walked every stored call of the caller to
find the few flagged leads, so a frequent caller made every batch slower (in bench.agi_bench,
where every call has one caller, this read was a quarter of a call-start batch after 6,000
calls). The partial index holds the leads alone: at most one per caller and month.

Revision ID: 0008a
Revises: 0007a
"""

import sqlalchemy as sa
from alembic import op

revision = "0008a"
down_revision = "0007a"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Written as the queries write it (schema.CALL_LEADS), so each planner matches it.
    op.create_index(
        "ix_calls_caller_leads",
        "calls",
        ["account_id", "caller", "started_at"],
        sqlite_where=sa.text("lead IS 1 AND spam IS 0"),
        postgresql_where=sa.text("lead IS true AND spam IS false"),
    )


def downgrade() -> None:
    op.drop_index("ix_calls_caller_leads", table_name="calls")

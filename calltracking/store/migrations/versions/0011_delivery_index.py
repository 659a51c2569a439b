"""webhook_deliveries: an index on (state, next_attempt_at)

The retries' claims, the dispatcher's next due time and /metrics look up pending deliveries;
without an index each look read the whole table, which keeps a row per delivered event (and
retention now trims it, store/retention.py).

Revision ID: 0011a
Revises: 0010a
"""

from alembic import op

revision = "0011a"
down_revision = "0010a"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_webhook_deliveries_due", "webhook_deliveries", ["state", "next_attempt_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")

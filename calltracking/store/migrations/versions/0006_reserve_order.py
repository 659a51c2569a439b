"""numbers: an index on (site_id, e164), so the reserve is read in order

A pool grows from the reserve's first free numbers (`site_id IS NULL ... ORDER BY e164 LIMIT n`)
and takes them with `WHERE e164 IN (...) AND site_id IS NULL`. With only the site_id index,
SQLite read and sorted the whole reserve for each growing batch (4 ms with 20,000 numbers
against 1 ms with 200); with this one it walks the first rows in order and stops.

Revision ID: 0006a
Revises: 0004a
"""

from alembic import op

revision = "0006a"
down_revision = "0004a"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_numbers_site_id_e164", "numbers", ["site_id", "e164"])


def downgrade() -> None:
    op.drop_index("ix_numbers_site_id_e164", table_name="numbers")

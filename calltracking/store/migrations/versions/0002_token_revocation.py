"""token revocation; numbers an account brought itself

Revision ID: 0002a
Revises: 0001

Tokens get the `prefix` operators name them by and `revoked_at`; numbers get
`owner_account_id` (set on defaults and static numbers an account brought, which never enter
the shared reserve). Existing rows keep NULL: old tokens are revoked by their whole value, and
numbers already in the system count as the admin's.
"""

import sqlalchemy as sa
from alembic import op

import calltracking.store.schema

revision = '0002a'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('prefix', sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column(
                'revoked_at',
                calltracking.store.schema.UtcDateTime(timezone=True),
                nullable=True,
            )
        )
        batch_op.create_index(batch_op.f('ix_tokens_prefix'), ['prefix'], unique=False)
    with op.batch_alter_table('numbers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner_account_id', sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('numbers', schema=None) as batch_op:
        batch_op.drop_column('owner_account_id')
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tokens_prefix'))
        batch_op.drop_column('revoked_at')
        batch_op.drop_column('prefix')

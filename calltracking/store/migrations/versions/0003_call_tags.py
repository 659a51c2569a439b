"""call qualification: account tags, call tags, the target-call rule

Revision ID: 0003a
Revises: 0005a
"""

import sqlalchemy as sa
from alembic import op

import calltracking.store.schema

revision = '0003a'
down_revision = '0005a'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('accounts') as batch:
        batch.add_column(sa.Column('target_call_talk_s', sa.Integer(), nullable=True))
    op.create_table(
        'account_tags',
        sa.Column('account_id', sa.String(length=40), nullable=False),
        sa.Column('name', sa.String(length=40), nullable=False),
        sa.Column(
            'created_at', calltracking.store.schema.UtcDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ['account_id'],
            ['accounts.id'],
            name=op.f('fk_account_tags_account_id_accounts'),
            ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('account_id', 'name', name=op.f('pk_account_tags')),
    )
    op.create_table(
        'call_tags',
        sa.Column('call_id', sa.String(length=40), nullable=False),
        sa.Column('tag', sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ['call_id'],
            ['calls.id'],
            name=op.f('fk_call_tags_call_id_calls'),
            ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('call_id', 'tag', name=op.f('pk_call_tags')),
    )
    op.create_index('ix_call_tags_tag', 'call_tags', ['tag'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_call_tags_tag', table_name='call_tags')
    op.drop_table('call_tags')
    op.drop_table('account_tags')
    with op.batch_alter_table('accounts') as batch:
        batch.drop_column('target_call_talk_s')

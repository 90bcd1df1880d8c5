"""pricing: the status webhooks' pricing object as message columns, and loaded rate cards

Revision ID: 0009_pricing
Revises: 0008_subscriptions
"""
from alembic import op
import sqlalchemy as sa


revision = '0009_pricing'
down_revision = '0008_subscriptions'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pricing_billable', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('pricing_category', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('pricing_type', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('pricing_model', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('pricing_country', sa.String(length=2), nullable=True))
    op.create_table(
        'rate_cards',
        sa.Column('id', BigId, autoincrement=True, nullable=False),
        sa.Column('workspace_id', sa.String(length=40), nullable=True),
        sa.Column('rates', sa.JSON(), nullable=False),
        sa.Column('markets', sa.JSON(), nullable=False),
        sa.Column('source', sa.String(length=200), nullable=True),
        sa.Column('loaded_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_rate_cards_workspace_id_workspaces'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_rate_cards')))
    with op.batch_alter_table('rate_cards', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rate_cards_workspace_id'), ['workspace_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('rate_cards', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rate_cards_workspace_id'))
    op.drop_table('rate_cards')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        for column in ('pricing_country', 'pricing_model', 'pricing_type', 'pricing_category', 'pricing_billable'):
            batch_op.drop_column(column)

"""Portfolio messaging limits: a connection knows its business portfolio and the portfolio's
tier; a send's ``hold_reason`` can say when the next slot frees (up to 200 characters)

Revision ID: 0012_portfolio
Revises: 0011_bsuid
"""
from alembic import op
import sqlalchemy as sa


revision = '0012_portfolio'
down_revision = '0011_bsuid'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('portfolio_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('messaging_limit', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('limit_updated_at', sa.DateTime(), nullable=True))
    with op.batch_alter_table('sends', schema=None) as batch_op:
        batch_op.alter_column('hold_reason', existing_type=sa.String(length=64), type_=sa.String(length=200),
                              existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table('sends', schema=None) as batch_op:
        batch_op.alter_column('hold_reason', existing_type=sa.String(length=200), type_=sa.String(length=64),
                              existing_nullable=True)
    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.drop_column('limit_updated_at')
        batch_op.drop_column('messaging_limit')
        batch_op.drop_column('portfolio_id')

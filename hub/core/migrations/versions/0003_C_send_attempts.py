"""sends: the claim that holds a send and when Meta may first have seen it

Revision ID: 0003_C
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa


revision = '0003_C'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sends', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claim_token', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('attempted_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sends', schema=None) as batch_op:
        batch_op.drop_column('attempted_at')
        batch_op.drop_column('claim_token')

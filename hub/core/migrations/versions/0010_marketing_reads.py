"""marketing frequency caps and read receipts: a contact's Meta per-user marketing limit (131049)
cool-down, a connection's read-receipts policy, a send's reply target and typing indicator

Revision ID: 0010_marketing_reads
Revises: 0009_pricing
"""
from alembic import op
import sqlalchemy as sa


revision = '0010_marketing_reads'
down_revision = '0009_pricing'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('marketing_limited_until', sa.DateTime(), nullable=True))
    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('read_receipts', sa.String(length=16), nullable=True))
    with op.batch_alter_table('sends', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reply_to', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('typing', sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sends', schema=None) as batch_op:
        batch_op.drop_column('typing')
        batch_op.drop_column('reply_to')
    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.drop_column('read_receipts')
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_column('marketing_limited_until')

"""outbound_deliveries: an index to find a workspace's payment-link rows by idempotency key

Revision ID: 0007_paylinks
Revises: 0006
"""
from alembic import op


revision = '0007_paylinks'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbound_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_outbound_kind_target', ['workspace_id', 'kind', 'target'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbound_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_outbound_kind_target')

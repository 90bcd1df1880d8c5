"""sends: a cancel group, so one CancelScheduled(group=…) cancels every reminder of a booking

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sends', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cancel_group', sa.String(length=255), nullable=True))
        batch_op.create_index('ix_sends_cancel_group', ['workspace_id', 'cancel_group'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sends', schema=None) as batch_op:
        batch_op.drop_index('ix_sends_cancel_group')
        batch_op.drop_column('cancel_group')

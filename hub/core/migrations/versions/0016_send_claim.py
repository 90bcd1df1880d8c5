"""The send claim reads only the queued sends it takes: a partial index of the queued sends by
number (``ix_sends_queued``), walked once per number (docs/benchmarks.md, "Sending")

Revision ID: 0016_send_claim
Revises: 0015_datasize
"""
from alembic import op
import sqlalchemy as sa


revision = '0016_send_claim'
down_revision = '0015_datasize'
branch_labels = None
depends_on = None

QUEUED = sa.text("status = 'queued'")


def upgrade() -> None:
    op.create_index('ix_sends_queued', 'sends', ['connection_id', 'id'], postgresql_where=QUEUED,
                    sqlite_where=QUEUED)


def downgrade() -> None:
    op.drop_index('ix_sends_queued', table_name='sends')

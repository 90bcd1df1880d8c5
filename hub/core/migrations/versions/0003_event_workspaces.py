"""inbound event workspaces: a Meta delivery listed under every workspace it concerns

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 15:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('inbound_event_workspaces',
    sa.Column('event_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('workspace_id', sa.String(length=40), nullable=False),
    sa.ForeignKeyConstraint(['event_id'], ['inbound_events.id'], name=op.f('fk_inbound_event_workspaces_event_id_inbound_events'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_inbound_event_workspaces_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('event_id', 'workspace_id', name=op.f('pk_inbound_event_workspaces'))
    )
    with op.batch_alter_table('inbound_event_workspaces', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inbound_event_workspaces_workspace_id'), ['workspace_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('inbound_event_workspaces', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inbound_event_workspaces_workspace_id'))

    op.drop_table('inbound_event_workspaces')

"""subscriptions: description, secret rotation, failure tracking; outbound_events; deliveries know their event;
connections remember their inactivity warning

Revision ID: 0007_subscriptions
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa


revision = '0007_subscriptions'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('inactivity_warned_at', sa.DateTime(), nullable=True))
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('description', sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column('previous_secret', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('previous_secret_expires_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('disabled_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('failing_since', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('updated_at', sa.DateTime(), nullable=True))
    with op.batch_alter_table('outbound_deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('event_id', sa.String(length=40), nullable=True))
        batch_op.create_index(batch_op.f('ix_outbound_deliveries_event_id'), ['event_id'], unique=False)
    op.create_table('outbound_events',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('workspace_id', sa.String(length=40), nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_outbound_events_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbound_events'))
    )
    with op.batch_alter_table('outbound_events', schema=None) as batch_op:
        batch_op.create_index('ix_outbound_events_recent', ['workspace_id', 'type', 'created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbound_events', schema=None) as batch_op:
        batch_op.drop_index('ix_outbound_events_recent')
    op.drop_table('outbound_events')
    with op.batch_alter_table('outbound_deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbound_deliveries_event_id'))
        batch_op.drop_column('event_id')
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        for name in ('updated_at', 'failing_since', 'disabled_at', 'previous_secret_expires_at',
                     'previous_secret', 'description'):
            batch_op.drop_column(name)
    with op.batch_alter_table('connections', schema=None) as batch_op:
        batch_op.drop_column('inactivity_warned_at')

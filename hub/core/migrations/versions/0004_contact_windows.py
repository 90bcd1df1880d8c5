"""contact windows per business number; why a send left from its number

The 24-hour window and the echo-aware hold move from the contact to (connection, contact):
``contact_windows`` is filled from the stored customer messages (the window) and from each
contact's latest app echo (a hold still running). ``contacts.last_inbound_at`` and
``contacts.hold_until`` are kept as the latest across the contact's numbers.
``sends.connection_reason`` says why a send goes out from its number.

Revision ID: 0004
Revises: 0003
"""
import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('contact_windows',
    sa.Column('connection_id', sa.String(length=40), nullable=False),
    sa.Column('contact_id', BigId, nullable=False),
    sa.Column('workspace_id', sa.String(length=40), nullable=False),
    sa.Column('last_inbound_at', sa.DateTime(), nullable=True),
    sa.Column('hold_until', sa.DateTime(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['connection_id'], ['connections.id'], name=op.f('fk_contact_windows_connection_id_connections'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_contact_windows_contact_id_contacts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_contact_windows_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('connection_id', 'contact_id', name=op.f('pk_contact_windows'))
    )
    with op.batch_alter_table('contact_windows', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contact_windows_contact_id'), ['contact_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_contact_windows_workspace_id'), ['workspace_id'], unique=False)
    with op.batch_alter_table('sends', schema=None) as batch_op:
        batch_op.add_column(sa.Column('connection_reason', sa.String(length=32), nullable=True))
    _backfill(op.get_bind())


def _backfill(bind) -> None:
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    bind.execute(sa.text(
        "INSERT INTO contact_windows (connection_id, contact_id, workspace_id, last_inbound_at, updated_at) "
        "SELECT connection_id, contact_id, workspace_id, MAX(timestamp), :now FROM messages "
        "WHERE direction = 'in' AND origin = 'customer' AND contact_id IS NOT NULL "
        "AND type NOT IN ('system', 'unsupported', 'revoke') "
        "GROUP BY connection_id, contact_id, workspace_id"), {"now": now})
    held = bind.execute(sa.text(
        "SELECT c.id, c.workspace_id, c.hold_until, "
        "(SELECT m.connection_id FROM messages m WHERE m.contact_id = c.id AND m.origin = 'app_echo' "
        " ORDER BY m.timestamp DESC, m.id DESC LIMIT 1) AS connection_id "
        "FROM contacts c WHERE c.hold_until > :now"), {"now": now}).all()
    for contact_id, workspace_id, hold_until, connection_id in held:
        if connection_id is None:
            continue
        updated = bind.execute(sa.text(
            "UPDATE contact_windows SET hold_until = :until WHERE connection_id = :conn AND contact_id = :contact"),
            {"until": hold_until, "conn": connection_id, "contact": contact_id}).rowcount
        if not updated:
            bind.execute(sa.text(
                "INSERT INTO contact_windows (connection_id, contact_id, workspace_id, hold_until, updated_at) "
                "VALUES (:conn, :contact, :ws, :until, :now)"),
                {"conn": connection_id, "contact": contact_id, "ws": workspace_id, "until": hold_until, "now": now})


def downgrade() -> None:
    with op.batch_alter_table('sends', schema=None) as batch_op:
        batch_op.drop_column('connection_reason')
    with op.batch_alter_table('contact_windows', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contact_windows_workspace_id'))
        batch_op.drop_index(batch_op.f('ix_contact_windows_contact_id'))
    op.drop_table('contact_windows')

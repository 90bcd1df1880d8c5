"""Inbox: conversation state (status, assignee, read marker) and internal notes

Revision ID: 0014_inbox
Revises: 0013_console_users
"""
from alembic import op
import sqlalchemy as sa


revision = '0014_inbox'
down_revision = '0013_console_users'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('conversations',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('workspace_id', sa.String(length=40), nullable=False),
    sa.Column('contact_id', BigId, nullable=False),
    sa.Column('connection_id', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('assignee_user_id', sa.String(length=40), nullable=True),
    sa.Column('last_message_at', sa.DateTime(), nullable=True),
    sa.Column('last_message_id', BigId, nullable=True),
    sa.Column('last_inbound_id', BigId, nullable=True),
    sa.Column('read_up_to_id', BigId, nullable=True),
    sa.Column('closed_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_conversations_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_conversations_contact_id_contacts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['connection_id'], ['connections.id'], name=op.f('fk_conversations_connection_id_connections'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['assignee_user_id'], ['users.id'], name=op.f('fk_conversations_assignee_user_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_conversations')),
    sa.UniqueConstraint('contact_id', 'connection_id', name=op.f('uq_conversations_contact_id_connection_id'))
    )
    op.create_index('ix_conversations_recent', 'conversations', ['workspace_id', 'last_message_at'], unique=False)
    op.create_table('conversation_notes',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('conversation_id', sa.String(length=40), nullable=False),
    sa.Column('workspace_id', sa.String(length=40), nullable=False),
    sa.Column('author_user_id', sa.String(length=40), nullable=True),
    sa.Column('author_name', sa.String(length=254), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_conversation_notes_conversation_id_conversations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_conversation_notes_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['author_user_id'], ['users.id'], name=op.f('fk_conversation_notes_author_user_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_conversation_notes'))
    )
    with op.batch_alter_table('conversation_notes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_conversation_notes_conversation_id'), ['conversation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_conversation_notes_workspace_id'), ['workspace_id'], unique=False)


def downgrade() -> None:
    op.drop_table('conversation_notes')
    op.drop_index('ix_conversations_recent', table_name='conversations')
    op.drop_table('conversations')

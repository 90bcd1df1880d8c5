"""Cost flat with data size: indexes that match the listings' filters and ORDER BY (keyset
pages of /sends, /messages, /contacts), the analytics window, the send → message join, and a
trigram index for the contacts' ``?q=`` substring search on PostgreSQL (docs/benchmarks.md,
"Data size")

On PostgreSQL ``ix_contacts_search`` is a GIN index with ``gin_trgm_ops`` (the ``pg_trgm``
extension, trusted since PostgreSQL 13, is created when the server offers it). Without
``pg_trgm`` (and on SQLite) it is a plain index on the same columns: the schema still matches
the models, search still works, it just scans.

Revision ID: 0015_datasize
Revises: 0014_inbox
"""
import logging

from alembic import op
import sqlalchemy as sa


revision = '0015_datasize'
down_revision = '0014_inbox'
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")
SEARCHED = ('wa_id', 'user_id', 'username', 'profile_name', 'full_name')


def _trigrams() -> bool:
    """Whether ``pg_trgm`` is (or can now be) installed on this PostgreSQL database."""
    bind = op.get_bind()
    if bind.dialect.name != 'postgresql':
        return False
    available = bind.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")).first()
    if not available:
        log.warning("pg_trgm is not available: contact search (?q=) will scan the workspace's contacts")
        return False
    try:
        with bind.begin_nested():
            bind.execute(sa.text('CREATE EXTENSION IF NOT EXISTS pg_trgm'))
    except sa.exc.DBAPIError as exc:
        log.warning("cannot create extension pg_trgm (%s): contact search (?q=) will scan", exc.orig)
        return False
    return True


def upgrade() -> None:
    op.create_index('ix_contacts_list', 'contacts', ['workspace_id', 'id'])
    if _trigrams():
        op.create_index('ix_contacts_search', 'contacts', list(SEARCHED), postgresql_using='gin',
                        postgresql_ops={c: 'gin_trgm_ops' for c in SEARCHED})
    else:
        op.create_index('ix_contacts_search', 'contacts', list(SEARCHED))
    op.create_index('ix_messages_list', 'messages', ['workspace_id', 'timestamp', 'id'])
    op.create_index('ix_messages_send', 'messages', ['send_id'])
    op.create_index('ix_sends_list', 'sends', ['workspace_id', 'id'])
    op.create_index('ix_sends_status_list', 'sends', ['workspace_id', 'status', 'id'])
    op.create_index('ix_sends_contact', 'sends', ['contact_id', 'id'])
    op.create_index('ix_sends_created', 'sends', ['workspace_id', 'created_at'])


def downgrade() -> None:
    for table, name in (('sends', 'ix_sends_created'), ('sends', 'ix_sends_contact'),
                        ('sends', 'ix_sends_status_list'), ('sends', 'ix_sends_list'),
                        ('messages', 'ix_messages_send'), ('messages', 'ix_messages_list'),
                        ('contacts', 'ix_contacts_search'), ('contacts', 'ix_contacts_list')):
        op.drop_index(name, table_name=table)

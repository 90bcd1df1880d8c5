"""BSUID-only recipients: contacts keep the WhatsApp ``username``; a send's ``to`` holds a
phone number or a business-scoped user ID (up to 134 characters)

Revision ID: 0011_bsuid
Revises: 0010_marketing_reads
"""
from alembic import op
import sqlalchemy as sa


revision = '0011_bsuid'
down_revision = '0010_marketing_reads'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('username', sa.String(length=128), nullable=True))
    with op.batch_alter_table('sends', schema=None) as batch_op:
        batch_op.alter_column('to', existing_type=sa.String(length=32), type_=sa.String(length=160),
                              existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('sends', schema=None) as batch_op:
        batch_op.alter_column('to', existing_type=sa.String(length=160), type_=sa.String(length=32),
                              existing_nullable=False)
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_column('username')

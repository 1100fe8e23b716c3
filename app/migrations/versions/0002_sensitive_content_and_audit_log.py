"""sensitive content and audit log

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 00:08:19.947229
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('username', sa.String(length=128), nullable=True),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('kb_id', sa.Integer(), nullable=True),
    sa.Column('document_id', sa.Integer(), nullable=True),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_events_action'), ['action'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_events_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_events_user_id'), ['user_id'], unique=False)

    op.create_table('sensitive_terms',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('term', sa.String(length=200), nullable=False),
    sa.Column('category', sa.String(length=64), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('term', 'category')
    )
    op.create_table('sensitive_policies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('stage', sa.Enum('ingest', 'answer', name='policystage', native_enum=False, length=16), nullable=False),
    sa.Column('kb_id', sa.Integer(), nullable=True),
    sa.Column('role', sa.Enum('admin', 'editor', 'employee', name='role', native_enum=False, length=16), nullable=True),
    sa.Column('actions', sa.JSON(), nullable=False),
    sa.Column('default_action', sa.String(length=16), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['kb_id'], ['knowledge_bases.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('sensitive_policies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sensitive_policies_kb_id'), ['kb_id'], unique=False)

    with op.batch_alter_table('chunks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('findings', sa.JSON(), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('redacted', sa.Boolean(), nullable=False, server_default=sa.false()))



def downgrade() -> None:
    with op.batch_alter_table('chunks', schema=None) as batch_op:
        batch_op.drop_column('redacted')
        batch_op.drop_column('findings')

    with op.batch_alter_table('sensitive_policies', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sensitive_policies_kb_id'))

    op.drop_table('sensitive_policies')
    op.drop_table('sensitive_terms')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_events_user_id'))
        batch_op.drop_index(batch_op.f('ix_audit_events_at'))
        batch_op.drop_index(batch_op.f('ix_audit_events_action'))

    op.drop_table('audit_events')

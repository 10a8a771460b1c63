"""operators and audit trail: the support console (issue 24); indexes for its user search

Revision ID: fe59aab58e1a
Revises: e5a8c3f7d1b2
Create Date: 2026-12-07 14:35:57

"""
from alembic import op
import sqlalchemy as sa

import wxauth.models  # custom column types (UTCDateTime)


# revision identifiers, used by Alembic.
revision = 'fe59aab58e1a'
down_revision = 'e5a8c3f7d1b2'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('audit_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('at', wxauth.models.UTCDateTime(), nullable=False),
    sa.Column('operator', sa.String(length=64), nullable=False),
    sa.Column('client_address', sa.String(length=45), nullable=True),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('target', sa.String(length=64), nullable=True),
    sa.Column('reason', sa.String(length=255), nullable=True),
    sa.Column('before', sa.Text(), nullable=True),
    sa.Column('after', sa.Text(), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci'
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_events_at'), ['at'], unique=False)
        batch_op.create_index('ix_audit_events_operator_at', ['operator', 'at'], unique=False)
        batch_op.create_index('ix_audit_events_target_at', ['target', 'at'], unique=False)

    op.create_table('operators',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('must_change_password', sa.Boolean(), nullable=False),
    sa.Column('totp_secret', sa.String(length=255), nullable=False),
    sa.Column('totp_last_step', sa.BigInteger(), nullable=True),
    sa.Column('enrolled_at', wxauth.models.UTCDateTime(), nullable=True),
    sa.Column('failed_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('locked_until', wxauth.models.UTCDateTime(), nullable=True),
    sa.Column('disabled_at', wxauth.models.UTCDateTime(), nullable=True),
    sa.Column('session_version', sa.Integer(), server_default='0', nullable=False),
    sa.Column('created_at', wxauth.models.UTCDateTime(), nullable=False),
    sa.Column('last_sign_in_at', wxauth.models.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name', name='uq_operators_name'),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci'
    )
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.create_index('ix_users_nickname', ['nickname'], unique=False, postgresql_ops={'nickname': 'varchar_pattern_ops'})
        batch_op.create_index('ix_users_openid', ['openid'], unique=False)
        batch_op.create_index('ix_users_pure_phone_number', ['pure_phone_number'], unique=False)
        batch_op.create_index('ix_users_disabled_at', ['disabled_at'], unique=False)
        batch_op.create_index('ix_users_created_at', ['created_at'], unique=False)
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.create_index('ix_accounts_disabled_at', ['disabled_at'], unique=False)



def downgrade():
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_index('ix_accounts_disabled_at')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index('ix_users_created_at')
        batch_op.drop_index('ix_users_disabled_at')
        batch_op.drop_index('ix_users_pure_phone_number')
        batch_op.drop_index('ix_users_openid')
        batch_op.drop_index('ix_users_nickname', postgresql_ops={'nickname': 'varchar_pattern_ops'})

    op.drop_table('operators')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_events_target_at')
        batch_op.drop_index('ix_audit_events_operator_at')
        batch_op.drop_index(batch_op.f('ix_audit_events_at'))

    op.drop_table('audit_events')

"""signing keys (asymmetric JWT keys shared by every instance)

Revision ID: e5a8c3f7d1b2
Revises: d2b7e9c41a53
Create Date: 2026-12-07 15:00:00.000000

"""
from alembic import op
import sqlalchemy as sa

import wxauth.models  # custom column types (UTCDateTime)


# revision identifiers, used by Alembic.
revision = 'e5a8c3f7d1b2'
down_revision = 'd2b7e9c41a53'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('signing_keys',
    sa.Column('kid', sa.String(length=64), nullable=False),
    sa.Column('algorithm', sa.String(length=16), nullable=False),
    sa.Column('public_jwk', sa.Text(), nullable=False),
    sa.Column('private_key', sa.Text(), nullable=False),
    sa.Column('created_at', wxauth.models.UTCDateTime(), nullable=False),
    sa.Column('activated_at', wxauth.models.UTCDateTime(), nullable=True),
    sa.Column('retired_at', wxauth.models.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('kid'),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci'
    )


def downgrade():
    op.drop_table('signing_keys')

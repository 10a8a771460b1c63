"""service clients

Revision ID: d2b7e9c41a53
Revises: c4e1f0a9b2d7
Create Date: 2026-12-07 13:15:00.000000

"""
from alembic import op
import sqlalchemy as sa

import wxauth.models  # custom column types (UTCDateTime)


# revision identifiers, used by Alembic.
revision = 'd2b7e9c41a53'
down_revision = 'c4e1f0a9b2d7'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('service_clients',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=32), nullable=False),
    sa.Column('secret_hash', sa.String(length=255), nullable=False),
    sa.Column('scopes', sa.String(length=255), nullable=False),
    sa.Column('created_at', wxauth.models.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('client_id', name='uq_service_clients_client_id'),
    sa.UniqueConstraint('name', name='uq_service_clients_name'),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci'
    )


def downgrade():
    op.drop_table('service_clients')

"""login_sessions.refresh_jti: the session's current refresh token, rotated in the database

Revision ID: c4e1f0a9b2d7
Revises: 7a3a598fb90e
Create Date: 2026-12-07 06:00:00

Sessions that exist before this revision have no current refresh token (NULL): their
refresh tokens, issued before the upgrade, are refused (401 token_revoked) and the
mini-program logs in again; their access tokens keep working until they expire (README,
upgrade notes).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c4e1f0a9b2d7'
down_revision = '7a3a598fb90e'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('login_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('refresh_jti', sa.String(length=32), nullable=True))


def downgrade():
    with op.batch_alter_table('login_sessions', schema=None) as batch_op:
        batch_op.drop_column('refresh_jti')

"""encrypt session_key at rest

Widens users.session_key to hold a Fernet token and encrypts the plain session_keys already
stored, under the newest SESSION_KEY_ENCRYPTION_KEY. Downgrade decrypts them back.

Revision ID: 725089f22f7e
Revises: 59ec5be9765b
Create Date: 2026-11-20 23:23:28.223123

"""
from alembic import op
import sqlalchemy as sa
from wxauth.state import state


# revision identifiers, used by Alembic.
revision = '725089f22f7e'
down_revision = '59ec5be9765b'
branch_labels = None
depends_on = None

users = sa.table('users', sa.column('id', sa.Integer), sa.column('session_key', sa.String))


def _rewrite(transform):
    """Apply `transform` to every stored session_key (None: leave the row alone)."""
    conn = op.get_bind()
    for row_id, value in conn.execute(sa.select(users.c.id, users.c.session_key)).all():
        new = transform(value)
        if new is not None and new != value:
            conn.execute(users.update().where(users.c.id == row_id).values(session_key=new))


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.alter_column('session_key',
               existing_type=sa.VARCHAR(length=64),
               type_=sa.String(length=255),
               existing_nullable=False)
    cipher = state().cipher
    _rewrite(lambda v: None if cipher.looks_encrypted(v) else cipher.encrypt(v))


def downgrade():
    cipher = state().cipher
    _rewrite(lambda v: cipher.decrypt(v) if cipher.looks_encrypted(v) else None)
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.alter_column('session_key',
               existing_type=sa.String(length=255),
               type_=sa.VARCHAR(length=64),
               existing_nullable=False)

"""accounts

Revision ID: b603b0a7534d
Revises: 1ac93103d8e5
Create Date: 2026-11-21 00:12:22.939090

"""
from alembic import op
import sqlalchemy as sa

import wxauth.models  # custom column types (UTCDateTime)


# revision identifiers, used by Alembic.
revision = 'b603b0a7534d'
down_revision = '1ac93103d8e5'
branch_labels = None
depends_on = None


accounts = sa.Table('accounts', sa.MetaData(), sa.Column('id', sa.Integer, primary_key=True),
                    sa.Column('unionid', sa.String(64)), sa.Column('created_at', sa.DateTime))
users = sa.table('users', sa.column('id', sa.Integer), sa.column('unionid', sa.String),
                 sa.column('account_id', sa.Integer), sa.column('created_at', sa.DateTime))


def upgrade():
    op.create_table('accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('unionid', sa.String(length=64), nullable=True),
    sa.Column('created_at', wxauth.models.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('unionid', name='uq_accounts_unionid'),
    mysql_charset='utf8mb4',
    mysql_collate='utf8mb4_unicode_ci'
    )
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('account_id', sa.Integer(), nullable=True))

    # One account per unionid, and one per user without a unionid, as old as its oldest user.
    conn = op.get_bind()
    rows = conn.execute(sa.select(users.c.id, users.c.unionid, users.c.created_at)
                        .order_by(users.c.created_at, users.c.id)).all()
    by_unionid = {}
    for user_id, unionid, created_at in rows:
        account_id = by_unionid.get(unionid) if unionid else None
        if account_id is None:
            account_id = _insert_account(conn, unionid, created_at)
            if unionid:
                by_unionid[unionid] = account_id
        conn.execute(users.update().where(users.c.id == user_id).values(account_id=account_id))

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.alter_column('account_id', existing_type=sa.Integer(), nullable=False)
        batch_op.create_index(batch_op.f('ix_users_account_id'), ['account_id'], unique=False)
        batch_op.create_foreign_key('fk_users_account_id', 'accounts', ['account_id'], ['id'])


def _insert_account(conn, unionid, created_at):
    return conn.execute(accounts.insert().values(unionid=unionid, created_at=created_at)
                        ).inserted_primary_key[0]


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint('fk_users_account_id', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_users_account_id'))
        batch_op.drop_column('account_id')

    op.drop_table('accounts')

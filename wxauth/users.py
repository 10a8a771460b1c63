"""Login and profile logic on the `User` model."""

from __future__ import annotations

import random
import time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.dialects import mysql, postgresql, sqlite

from .extensions import db
from .models import User, utcnow
from .wechat import crypto
from .wechat.client import Code2SessionResult

# WeChat's anonymous placeholders since 2022 (getUserProfile): never stored over real data.
ANONYMOUS_NICKNAME = "微信用户"
ANONYMOUS_AVATAR_MARK = "/POgEwh4mIHO4nibH0KlMECNjjGxQUq24ZEaGT4poC6icRiccVGKSyXwibcPq4BWmiaIGuG1icwxaQX6grC9VemZoJ8rg/"

# decrypted userInfo key → User attribute
USER_INFO_FIELDS = {
    "nickName": "nickname",
    "avatarUrl": "avatar_url",
    "gender": "gender",
    "country": "country",
    "province": "province",
    "city": "city",
    "language": "language",
}


# Transient conflicts worth one more try: MySQL/MariaDB deadlock and lock wait timeout
# (InnoDB can deadlock two concurrent upserts of one key), PostgreSQL deadlock/serialization.
_RETRY_MYSQL_ERRORS = {1213, 1205}
_RETRY_SQLSTATES = {"40P01", "40001"}
UPSERT_ATTEMPTS = 5


def _is_transient(exc: DBAPIError) -> bool:
    orig = exc.orig
    if getattr(orig, "sqlstate", None) in _RETRY_SQLSTATES:
        return True
    args = getattr(orig, "args", ())
    return bool(args) and args[0] in _RETRY_MYSQL_ERRORS


def upsert_login(appid: str, session: Code2SessionResult) -> tuple[User, bool]:
    """Insert or update the user of a successful code2Session, race-free, and commit.

    One ``INSERT … ON CONFLICT (appid, openid) DO UPDATE`` (``ON DUPLICATE KEY UPDATE`` on
    MySQL/MariaDB): simultaneous first logins of one openid make one row and all succeed.
    The new session_key replaces the old; a unionid is kept when WeChat omits it. A deadlock
    the database reports is retried (a few times, with jitter).

    Returns:
        (user, is_new_user): is_new_user is true for exactly one of simultaneous first logins.
    """
    for attempt in range(UPSERT_ATTEMPTS):
        try:
            return _upsert_login(appid, session)
        except DBAPIError as exc:
            db.session.rollback()
            if attempt + 1 == UPSERT_ATTEMPTS or not _is_transient(exc):
                raise
            time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
    raise AssertionError("unreachable")


def _upsert_login(appid: str, session: Code2SessionResult) -> tuple[User, bool]:
    now = utcnow()
    table = User.__table__
    values = dict(appid=appid, openid=session.openid, unionid=session.unionid,
                  session_key=session.session_key, gender=0,
                  created_at=now, updated_at=now, last_login_at=now)
    dialect = db.session.get_bind().dialect.name
    if dialect in ("mysql", "mariadb"):
        stmt = mysql.insert(table).values(**values)
        stmt = stmt.on_duplicate_key_update(
            session_key=stmt.inserted.session_key,
            last_login_at=stmt.inserted.last_login_at,
            unionid=func.coalesce(stmt.inserted.unionid, table.c.unionid),
        )
    else:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = insert(table).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.appid, table.c.openid],
            set_=dict(
                session_key=stmt.excluded.session_key,
                last_login_at=stmt.excluded.last_login_at,
                unionid=func.coalesce(stmt.excluded.unionid, table.c.unionid),
            ),
        )
    db.session.execute(stmt)
    user = db.session.execute(
        select(User).where(User.appid == appid, User.openid == session.openid)
        .execution_options(populate_existing=True)
    ).scalar_one()
    db.session.commit()
    # Our insert set created_at = now; an update left the older value in place.
    return user, user.created_at == now


def find_user(appid: str, openid: str) -> User | None:
    return db.session.execute(
        select(User).where(User.appid == appid, User.openid == openid)
    ).scalar_one_or_none()


def apply_encrypted_user_info(
    user: User,
    *,
    appid: str,
    encrypted_data: bytes,
    iv: bytes,
    raw_data: str | None,
    signature: str | None,
    watermark_max_age: int,
) -> User:
    """Decrypt getUserProfile/getUserInfo data with the user's session_key and store it.

    Args:
        encrypted_data, iv: raw bytes (base64-decoded).
        raw_data, signature: optional clear rawData and its sha1 signature; checked when given.
        watermark_max_age: seconds; 0 skips the age check.

    Raises:
        crypto.DecryptError, crypto.WatermarkMismatch, crypto.WatermarkExpired,
        crypto.SignatureMismatch. Nothing is written when one is raised.
    """
    data = crypto.decrypt(user.session_key, encrypted_data, iv)
    crypto.check_watermark(data, appid, watermark_max_age)
    if raw_data is not None and signature is not None:
        crypto.check_signature(raw_data, signature, user.session_key)
    changes = {attr: data.get(key) for key, attr in USER_INFO_FIELDS.items()}
    unionid = data.get("unionId")
    if isinstance(unionid, str) and unionid:
        changes["unionid"] = unionid
    update_profile(user, _without_placeholders(changes))
    return user


def _without_placeholders(changes: dict[str, Any]) -> dict[str, Any]:
    """Drop WeChat's anonymous values: nickname 微信用户, the grey avatar, empty, gender 0."""
    kept = {}
    for attr, value in changes.items():
        if value in (None, "", 0):
            continue
        if attr == "nickname" and value == ANONYMOUS_NICKNAME:
            continue
        if attr == "avatar_url" and ANONYMOUS_AVATAR_MARK in str(value):
            continue
        if attr == "gender" and value not in (1, 2):
            continue
        if attr != "gender" and (not isinstance(value, str) or "\x00" in value):
            continue
        if isinstance(value, str):  # never longer than the column
            value = value[: User.__table__.c[attr].type.length]
        kept[attr] = value
    return kept


def update_profile(user: User, changes: dict[str, Any]) -> User:
    """Set the given profile attributes, bump updated_at when something changed, commit."""
    changed = False
    for attr, value in changes.items():
        if getattr(user, attr) != value:
            setattr(user, attr, value)
            changed = True
    if changed:
        user.updated_at = utcnow()
    db.session.commit()
    return user

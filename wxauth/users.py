"""Login and profile logic on the `User` and `Account` models."""

from __future__ import annotations

import functools
import importlib
import logging
import random
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy import insert as sa_insert
from sqlalchemy.exc import DBAPIError, NoResultFound
from sqlalchemy.orm import make_transient_to_detached, undefer
from sqlalchemy.orm.attributes import set_committed_value

from . import signals
from .extensions import db
from .models import Account, User, UTCDateTime, utcnow
from .wechat import crypto
from .wechat.client import Code2SessionResult

log = logging.getLogger(__name__)

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
# (InnoDB can deadlock two concurrent upserts of one key), PostgreSQL deadlock/serialization,
# and a row another transaction deleted under us (an account merged away).
_RETRY_MYSQL_ERRORS = {1213, 1205}
_RETRY_SQLSTATES = {"40P01", "40001"}
LOGIN_ATTEMPTS = 6
# last_login_at is kept to this precision: a returning login within it writes nothing
# when the session_key and unionid are unchanged.
LAST_LOGIN_RESOLUTION = timedelta(seconds=60)


def _is_transient(exc: Exception) -> bool:
    if isinstance(exc, NoResultFound):
        return True
    orig = getattr(exc, "orig", None)
    if getattr(orig, "sqlstate", None) in _RETRY_SQLSTATES:
        return True
    args = getattr(orig, "args", ())
    return bool(args) and args[0] in _RETRY_MYSQL_ERRORS


@dataclass
class LoginResult:
    user: User
    is_new_user: bool  # first login of this openid in this app
    account: Account | None  # the person's account (None: not looked at, nothing new)
    is_new_account: bool  # first time this person is seen in any app
    merged_account_id: int | None = None  # an account folded into `account` by this login


def login(appid: str, session: Code2SessionResult) -> LoginResult:
    """Record a successful code2Session: upsert the app user and attach it to its account.

    - A unionid that matches an account links the new app user to it; no unionid: an account
      of its own; a unionid that arrives later merges the user's account with the unionid's
      account, keeping the older one.
    - Race-free: ``INSERT … ON CONFLICT`` (``ON DUPLICATE KEY UPDATE`` on MySQL) for the user
      and for the unionid's account, row locks around a merge, and the whole transaction
      retried when the database reports a deadlock or a row vanished under it.
    - Commits, then sends the signals `user_created`, `account_created`, `accounts_merged`.
    """
    for attempt in range(LOGIN_ATTEMPTS):
        try:
            result = _login(appid, session)
            break
        except (DBAPIError, NoResultFound) as exc:
            db.session.rollback()
            if attempt + 1 == LOGIN_ATTEMPTS or not _is_transient(exc):
                raise
            time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
    signals.send_after_login(result)
    return result


@functools.cache
def _statements(dialect: str, returning: bool) -> dict[str, Any]:
    """The login's statements for one SQL dialect, built once with bind parameters (building
    an upsert costs more than running it). `returning`: the database answers INSERT …
    RETURNING (PostgreSQL, SQLite ≥ 3.35, MariaDB ≥ 10.5), so the user upsert gives the row
    back without a SELECT after it."""
    mysql_like = dialect in ("mysql", "mariadb")
    # only the dialect in use is imported
    module = "mysql" if mysql_like else "postgresql" if dialect == "postgresql" else "sqlite"
    insert = importlib.import_module(f"sqlalchemy.dialects.{module}").insert
    users, accounts = User.__table__, Account.__table__
    account = insert(accounts).values(unionid=bindparam("unionid"),
                                      created_at=bindparam("now", type_=UTCDateTime))
    if mysql_like:
        account = account.on_duplicate_key_update(id=accounts.c.id)  # a no-op
    else:
        account = account.on_conflict_do_nothing(index_elements=["unionid"])
    user = insert(users).values(
        appid=bindparam("appid"), openid=bindparam("openid"), unionid=bindparam("unionid"),
        account_id=bindparam("account_id"),
        session_key=bindparam("session_key", type_=users.c.session_key.type), gender=0,
        created_at=bindparam("now", type_=UTCDateTime),
        updated_at=bindparam("now", type_=UTCDateTime),
        last_login_at=bindparam("now", type_=UTCDateTime))
    if mysql_like:
        user = user.on_duplicate_key_update(
            session_key=user.inserted.session_key, last_login_at=user.inserted.last_login_at,
            unionid=func.coalesce(user.inserted.unionid, users.c.unionid))
    else:
        user = user.on_conflict_do_update(
            index_elements=[users.c.appid, users.c.openid],
            set_=dict(session_key=user.excluded.session_key,
                      last_login_at=user.excluded.last_login_at,
                      unionid=func.coalesce(user.excluded.unionid, users.c.unionid)))
    by_key = (User.appid == bindparam("appid")) & (User.openid == bindparam("openid"))
    if returning:  # loaded as a User by the ORM's SELECT path (its bulk-INSERT path costs more),
        # without the session_key it was just given (deferred, as everywhere)
        answered = [column for column in users.c if column.key != "session_key"]
        user = (select(User).from_statement(user.returning(*answered))
                .execution_options(populate_existing=True))
    return {
        "insert_account": account,
        "insert_new_account": sa_insert(accounts).values(
            unionid=None, created_at=bindparam("now", type_=UTCDateTime)),
        "select_union_account": select(Account).where(Account.unionid == bindparam("unionid"))
        .with_for_update().execution_options(populate_existing=True),
        "upsert_user": user,
        "select_user_for_update": select(User).where(by_key).options(undefer(User.session_key))
        .with_for_update().execution_options(populate_existing=True),
        "select_user": select(User).where(by_key).execution_options(populate_existing=True),
        "select_user_with_key": select(User).where(by_key).options(undefer(User.session_key)),
    }


def _sql(name: str):
    dialect = db.engine.dialect  # (the session's bind: one engine)
    return _statements(dialect.name, dialect.insert_returning)[name]


def _login(appid: str, session: Code2SessionResult) -> LoginResult:
    now = utcnow()
    unionid = session.unionid
    union_account, union_created = None, False
    if unionid:
        db.session.execute(_sql("insert_account"), {"unionid": unionid, "now": now})
        union_account = db.session.execute(_sql("select_union_account"),
                                           {"unionid": unionid}).scalar_one()
        union_created = union_account.created_at == now

    key = {"appid": appid, "openid": session.openid}
    user = db.session.execute(_sql("select_user_for_update"), key).scalar_one_or_none()
    if user is None:
        return _first_login(appid, session, now, union_account, union_created)

    merge_needed = union_account is not None and union_account.id != user.account_id
    unchanged = (user.session_key == session.session_key
                 and (not unionid or user.unionid == unionid) and not merge_needed
                 and now - user.last_login_at < LAST_LOGIN_RESOLUTION)
    if unchanged:  # a returning user whose data did not change: nothing to write
        db.session.commit()  # ends the read (and releases the row lock); writes nothing
        return LoginResult(user, False, None, False)
    user.session_key = session.session_key
    user.last_login_at = now
    if unionid:
        user.unionid = unionid
    account, merged = None, None
    if merge_needed:
        account = db.session.get(Account, user.account_id, with_for_update=True)
        account, merged = _merge(account, union_account, unionid)
    db.session.commit()
    return LoginResult(user, False, account, False, merged)


def _first_login(appid, session, now, union_account, union_created) -> LoginResult:
    if union_account is not None:
        account, account_new = union_account, union_created
    else:  # a Core INSERT (an ORM flush costs more than the statement); the row is known
        result = db.session.execute(_sql("insert_new_account"), {"now": now})
        account = Account(id=result.inserted_primary_key[0], unionid=None, created_at=now)
        make_transient_to_detached(account)
        db.session.add(account)
        account_new = True
    key = {"appid": appid, "openid": session.openid}
    upserted = db.session.execute(_sql("upsert_user"), {
        **key, "unionid": session.unionid, "account_id": account.id,
        "session_key": session.session_key, "now": now})
    if db.engine.dialect.insert_returning:  # (the statement was built for it, see _sql)
        user = upserted.scalar_one()
    else:
        user = db.session.execute(_sql("select_user"), key).scalar_one()
    is_new_user = user.created_at == now  # our insert won; an update kept the older value
    if user.account_id != account.id:
        # Another first login of this openid won the race: use its account, drop ours.
        if account_new and union_account is None:
            db.session.delete(account)
        account, account_new = db.session.get(Account, user.account_id), False
    elif is_new_user and account_new:  # alone in a new account: no query for app_count
        set_committed_value(user, "app_count", 1)
    db.session.commit()
    return LoginResult(user, is_new_user, account, account_new)


def _merge(account: Account, union_account: Account, unionid: str):
    """Fold two accounts of one person into the older; returns (kept, merged-away id)."""
    if account.unionid not in (None, unionid):
        log.warning("not merging account %s (unionid differs) into %s", account.id,
                    union_account.id)
        return account, None
    keep, drop = sorted((account, union_account), key=lambda a: (a.created_at, a.id))
    # "evaluate" also moves the users already loaded in this session
    db.session.execute(update(User).where(User.account_id == drop.id)
                       .values(account_id=keep.id)
                       .execution_options(synchronize_session="evaluate"))
    db.session.delete(drop)
    db.session.flush()  # frees the unionid for `keep`
    keep.unionid = unionid
    db.session.flush()
    return keep, drop.id


def find_user(appid: str, openid: str, *, with_session_key: bool = False) -> User | None:
    """The user (appid, openid), or None; `with_session_key` loads the (deferred) session_key
    in the same query."""
    statement = _sql("select_user_with_key" if with_session_key else "select_user")
    return db.session.execute(statement, {"appid": appid, "openid": openid}).scalar_one_or_none()


def open_encrypted_data(user: User, encrypted_data: bytes, iv: bytes,
                        watermark_max_age: int) -> dict[str, Any]:
    """Decrypt encryptedData with the user's session_key and check its watermark.

    Args:
        encrypted_data, iv: raw bytes (base64-decoded).
        watermark_max_age: seconds; 0 skips the age check.

    Returns:
        The decrypted JSON object.

    Raises:
        crypto.DecryptError, crypto.WatermarkMismatch (not the user's app),
        crypto.WatermarkExpired.
    """
    data = crypto.decrypt(user.session_key, encrypted_data, iv)
    crypto.check_watermark(data, user.appid, watermark_max_age)
    return data


def apply_user_info(user: User, data: dict[str, Any], *, raw_data: str | None,
                    signature: str | None) -> User:
    """Store decrypted getUserProfile/getUserInfo data (from `open_encrypted_data`).

    Args:
        raw_data, signature: optional clear rawData and its sha1 signature; checked when given.

    Raises:
        crypto.SignatureMismatch. Nothing is written when it is raised.
    """
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

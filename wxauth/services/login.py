"""The login transaction: a successful code2Session becomes an app user in an account.

`login` upserts the user (appid, openid), attaches it to the person's account (one per
unionid) and merges two accounts of one person when a unionid arrives late; it is race-free
and retried on transient database conflicts. Signals go out after the commit.

A disabled user (or a user of a disabled account) is refused before anything is written
(`UserDisabled`). The caller can add its own rows to the login's transaction (``record``:
the session and the login-log row, `services.sessions`).
"""

from __future__ import annotations

import functools
import importlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, select, update
from sqlalchemy import insert as sa_insert
from sqlalchemy.exc import DBAPIError, NoResultFound
from sqlalchemy.orm import make_transient_to_detached, undefer
from sqlalchemy.orm.attributes import set_committed_value

from ..errors import Problem
from ..extensions import db
from ..i18n import _l
from ..models import Account, User, UTCDateTime, utcnow
from ..wechat.client import Code2SessionResult
from . import markers, signals

log = logging.getLogger(__name__)

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


class UserDisabled(Problem):
    """403 user_disabled: an operator disabled the user or their account. ``user_id``: the
    user refused (None when the person's account is disabled and they have no user in this
    app yet)."""

    def __init__(self, user_id: int | None):
        super().__init__("user_disabled", _l("This user is disabled."))
        self.user_id = user_id


# Called in the login's transaction, before its commit: (user, is_new_user, now).
Record = Callable[[User, bool, datetime], None]


def _no_record(user: User, is_new_user: bool, now: datetime) -> None:
    pass


@dataclass
class LoginResult:
    user: User
    user_created: bool  # this login created the app user's row
    account: Account | None  # the person's account (None: not looked at, nothing new)
    account_created: bool  # this login created the account's row
    merged_account_id: int | None = None  # an account folded into `account` by this login
    # rows created again after the person deleted their account (`markers` matched): the
    # app user's (its openid's marker), the person's (any marker of theirs, unionid included)
    returning_user: bool = False
    returning_person: bool = False

    @property
    def is_new_user(self) -> bool:
        """The first login of this openid in this app, ever."""
        return self.user_created and not self.returning_user

    @property
    def is_new_account(self) -> bool:
        """The first time this person is seen in any app, ever."""
        return self.account_created and not self.returning_person


def login(appid: str, session: Code2SessionResult, record: Record = _no_record) -> LoginResult:
    """Record a successful code2Session: upsert the app user and attach it to its account.

    - A unionid that matches an account links the new app user to it; no unionid: an account
      of its own; a unionid that arrives later merges the user's account with the unionid's
      account, keeping the older one.
    - Race-free: ``INSERT … ON CONFLICT`` (``ON DUPLICATE KEY UPDATE`` on MySQL) for the user
      and for the unionid's account, row locks around a merge, and the whole transaction
      retried when the database reports a deadlock or a row vanished under it.
    - `record` adds the caller's rows to the transaction (called again if it is retried).
    - A first login (the user's row created) whose openid or unionid matches the marker of
      a deleted account (`markers`) is not new: ``returning_user`` when the openid matches
      (not ``is_new_user``), ``returning_person`` when any does (not ``is_new_account``).
    - Commits, then sends the signals `user_created`, `account_created`, `accounts_merged`.

    Raises:
        UserDisabled (nothing written) when the user or their account is disabled.
    """
    for attempt in range(LOGIN_ATTEMPTS):
        try:
            result = _login(appid, session, record)
            break
        except UserDisabled:
            db.session.rollback()
            raise
        except (DBAPIError, NoResultFound) as exc:
            db.session.rollback()
            if attempt + 1 == LOGIN_ATTEMPTS or not _is_transient(exc):
                raise
            time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
    signals.send_after_login(result)
    return result


def _insert(dialect: str):
    """The dialect's INSERT construct (with its upsert clauses); only the one in use is
    imported."""
    module = ("mysql" if dialect in ("mysql", "mariadb")
              else "postgresql" if dialect == "postgresql" else "sqlite")
    return importlib.import_module(f"sqlalchemy.dialects.{module}").insert


# The login's statements are built once per dialect, with bind parameters: building an upsert
# costs more than running it (bench/costs.py shows the login's database share).

@functools.cache
def insert_union_account_stmt(dialect: str):
    """INSERT the account of ``:unionid`` unless it exists (``:now``)."""
    accounts = Account.__table__
    stmt = _insert(dialect)(accounts).values(unionid=bindparam("unionid"),
                                            created_at=bindparam("now", type_=UTCDateTime))
    if dialect in ("mysql", "mariadb"):
        return stmt.on_duplicate_key_update(id=accounts.c.id)  # a no-op
    return stmt.on_conflict_do_nothing(index_elements=["unionid"])


@functools.cache
def insert_new_account_stmt():
    """INSERT an account without unionid (``:now``)."""
    return sa_insert(Account.__table__).values(unionid=None,
                                               created_at=bindparam("now", type_=UTCDateTime))


@functools.cache
def select_union_account_stmt():
    """SELECT … FOR UPDATE the account of ``:unionid``."""
    return (select(Account).where(Account.unionid == bindparam("unionid")).with_for_update()
            .execution_options(populate_existing=True))


@functools.cache
def upsert_user_stmt(dialect: str, returning: bool):
    """INSERT the user (``:appid``, ``:openid``, ``:unionid``, ``:account_id``,
    ``:session_key``, ``:now``) or, when it exists, set its session_key, last login and
    unionid (kept when ``:unionid`` is null).

    `returning`: the database answers INSERT … RETURNING (PostgreSQL, SQLite ≥ 3.35,
    MariaDB ≥ 10.5), so the statement gives the row back as a User, without a SELECT after it.
    """
    users = User.__table__
    user = _insert(dialect)(users).values(
        appid=bindparam("appid"), openid=bindparam("openid"), unionid=bindparam("unionid"),
        account_id=bindparam("account_id"),
        session_key=bindparam("session_key", type_=users.c.session_key.type), gender=0,
        created_at=bindparam("now", type_=UTCDateTime),
        updated_at=bindparam("now", type_=UTCDateTime),
        last_login_at=bindparam("now", type_=UTCDateTime))
    if dialect in ("mysql", "mariadb"):
        user = user.on_duplicate_key_update(
            session_key=user.inserted.session_key, last_login_at=user.inserted.last_login_at,
            unionid=func.coalesce(user.inserted.unionid, users.c.unionid))
    else:
        user = user.on_conflict_do_update(
            index_elements=[users.c.appid, users.c.openid],
            set_=dict(session_key=user.excluded.session_key,
                      last_login_at=user.excluded.last_login_at,
                      unionid=func.coalesce(user.excluded.unionid, users.c.unionid)))
    if returning:  # loaded as a User by the ORM's SELECT path (its bulk-INSERT path costs more),
        # without the session_key it was just given (deferred, as everywhere)
        answered = [column for column in users.c if column.key != "session_key"]
        user = (select(User).from_statement(user.returning(*answered))
                .execution_options(populate_existing=True))
    return user


@functools.cache
def select_user_stmt(*, with_session_key: bool = False, for_update: bool = False):
    """SELECT the user (``:appid``, ``:openid``), `with_session_key` (deferred otherwise),
    `for_update` (with its session_key)."""
    stmt = select(User).where((User.appid == bindparam("appid"))
                              & (User.openid == bindparam("openid")))
    if with_session_key or for_update:
        stmt = stmt.options(undefer(User.session_key))
    if for_update:
        return stmt.with_for_update().execution_options(populate_existing=True)
    if with_session_key:  # (an identity-map hit keeps its loaded key)
        return stmt
    return stmt.execution_options(populate_existing=True)


def _login(appid: str, session: Code2SessionResult, record: Record) -> LoginResult:
    now = utcnow()
    unionid = session.unionid
    union_account, union_created = None, False
    if unionid:
        db.session.execute(insert_union_account_stmt(_dialect().name),
                           {"unionid": unionid, "now": now})
        union_account = db.session.execute(select_union_account_stmt(),
                                           {"unionid": unionid}).scalar_one()
        union_created = union_account.created_at == now

    key = {"appid": appid, "openid": session.openid}
    user = db.session.execute(select_user_stmt(for_update=True), key).scalar_one_or_none()
    if user is not None and user.disabled:
        raise UserDisabled(user.id)
    if union_account is not None and union_account.disabled_at:
        raise UserDisabled(user.id if user else None)
    if user is None:
        return _first_login(appid, session, now, union_account, union_created, record)

    merge_needed = union_account is not None and union_account.id != user.account_id
    unchanged = (user.session_key == session.session_key
                 and (not unionid or user.unionid == unionid) and not merge_needed
                 and now - user.last_login_at < LAST_LOGIN_RESOLUTION)
    if unchanged:  # a returning user whose data did not change: only the caller's rows
        record(user, False, now)
        db.session.commit()  # (and releases the row lock)
        return LoginResult(user, False, None, False)
    user.session_key = session.session_key
    user.last_login_at = now
    if unionid:
        user.unionid = unionid
    account, merged = None, None
    if merge_needed:
        account = db.session.get(Account, user.account_id, with_for_update=True)
        account, merged = _merge(account, union_account, unionid)
    record(user, False, now)
    db.session.commit()
    return LoginResult(user, False, account, False, merged)


def _first_login(appid, session, now, union_account, union_created, record) -> LoginResult:
    if union_account is not None:
        account, account_new = union_account, union_created
    else:  # a Core INSERT (an ORM flush costs more than the statement); the row is known
        result = db.session.execute(insert_new_account_stmt(), {"now": now})
        account = Account(id=result.inserted_primary_key[0], unionid=None, created_at=now)
        make_transient_to_detached(account)
        db.session.add(account)
        account_new = True
    key = {"appid": appid, "openid": session.openid}
    dialect = _dialect()
    upserted = db.session.execute(upsert_user_stmt(dialect.name, dialect.insert_returning), {
        **key, "unionid": session.unionid, "account_id": account.id,
        "session_key": session.session_key, "now": now})
    if dialect.insert_returning:
        user = upserted.scalar_one()
    else:
        user = db.session.execute(select_user_stmt(), key).scalar_one()
    is_new_user = user.created_at == now  # our insert won; an update kept the older value
    if user.account_id != account.id:
        # Another first login of this openid won the race: use its account, drop ours.
        if account_new and union_account is None:
            db.session.delete(account)
        account, account_new = db.session.get(Account, user.account_id), False
        if account.disabled_at:
            raise UserDisabled(user.id)
    elif is_new_user and account_new:  # alone in a new account: no query for app_count
        set_committed_value(user, "app_count", 1)
    # the markers of a deletion (one query, on a user's first login only)
    known = (markers.known(markers.digests(appid, session.openid, session.unionid))
             if is_new_user else set())
    result = LoginResult(user, is_new_user, account, account_new,
                         returning_user=markers.of_user(appid, session.openid) in known,
                         returning_person=bool(known))
    record(user, result.is_new_user, now)
    db.session.commit()
    return result


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


def _dialect():
    return db.engine.dialect  # (the session's bind: one engine)


def find_user(appid: str, openid: str, *, with_session_key: bool = False) -> User | None:
    """The user (appid, openid), or None. Its session_key is deferred (loaded on first use)
    unless `with_session_key` loads it in the same query."""
    return db.session.execute(select_user_stmt(with_session_key=with_session_key),
                              {"appid": appid, "openid": openid}).scalar_one_or_none()

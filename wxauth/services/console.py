"""What the support console reads and does (issue 24), each action audited (`audit`).

The actions call the same services as the CLI (`users.disable_user`, `users.disable_account`,
`sessions.end_session`, `rights.erase_account`, `rights.export`…), so their effects are the
same and immediate: a disable refuses the person's tokens at their next request on every
instance (the database is the one truth). No function here reads the request: the web layer
passes the operator's name and address.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, union

from ..errors import Problem
from ..extensions import db
from ..i18n import _l
from ..models import Account, LoginEvent, LoginSession, User
from . import audit, login_log, rights, sessions, users

PAGE = 50
SEARCH_BY = ("openid", "unionid", "phone", "user_id", "account_id", "nickname")
PERSON_LOGINS = 20


@dataclass(frozen=True)
class Actor:
    """Who acts: an operator's name and the address they act from."""

    name: str
    address: str | None


@dataclass(frozen=True)
class Search:
    """A search of app users: `q` by `by` (exact; ``nickname``: prefix), filters (None:
    any), `before_id` for the next page (newest user ids first)."""

    by: str = "openid"
    q: str = ""
    appid: str | None = None
    disabled: bool | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    before_id: int | None = None

    def terms(self) -> dict[str, Any]:
        """The search as the audit trail records it."""
        return {k: v for k, v in {"by": self.by, "q": self.q, "appid": self.appid,
                                  "disabled": self.disabled, "created_from": self.created_from,
                                  "created_to": self.created_to,
                                  "before_id": self.before_id}.items() if v is not None}


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def search_statement(query: Search):
    """The SELECT of `query` (a page and one row more, newest first), or None when the term
    cannot match (an id that is not a number)."""
    q = query.q.strip()
    statement = select(User)
    if q:
        if query.by == "openid":
            statement = statement.where(User.openid == q)
        elif query.by == "unionid":
            statement = statement.where(User.unionid == q)
        elif query.by == "phone":
            statement = statement.where(User.pure_phone_number == q)
        elif query.by in ("user_id", "account_id"):
            if not q.isdigit() or len(q) > 18:
                return None
            column = User.id if query.by == "user_id" else User.account_id
            statement = statement.where(column == int(q))
        elif query.by == "nickname":
            statement = statement.where(User.nickname.like(_like_prefix(q), escape="\\"))
    if query.appid:
        statement = statement.where(User.appid == query.appid)
    if query.disabled is not None:
        # each side on its own index (users.disabled_at; accounts.disabled_at, then
        # users.account_id): disabled people are few, whatever the table's size
        disabled = User.id.in_(union(
            select(User.id).where(User.disabled_at.is_not(None)),
            select(User.id).join(Account, Account.id == User.account_id)
            .where(Account.disabled_at.is_not(None))))
        statement = statement.where(disabled if query.disabled else ~disabled)
    if query.created_from:
        statement = statement.where(User.created_at >= query.created_from)
    if query.created_to:
        statement = statement.where(User.created_at < query.created_to)
    if query.before_id:
        statement = statement.where(User.id < query.before_id)
    return statement.order_by(User.id.desc()).limit(PAGE + 1)


def search(actor: Actor, query: Search) -> tuple[list[User], bool]:
    """(a page of matching app users, whether more follow); audited ``search``."""
    statement = search_statement(query)
    found = [] if statement is None else list(db.session.execute(statement).scalars())
    audit.record(actor.name, "search", address=actor.address, detail=query.terms())
    return found[:PAGE], len(found) > PAGE


@dataclass
class Person:
    """An account and what the person page shows of it (never a session_key or token)."""

    account: Account
    users: list[User]
    sessions: list[LoginSession]
    logins: list[LoginEvent]


def _account(account_id: int) -> Account:
    account = db.session.get(Account, account_id)
    if account is None:
        raise Problem("not_found", _l("There is no account %(id)s.", id=account_id))
    return account


def person(actor: Actor, account_id: int) -> Person:
    """Account `account_id` with its app users, live sessions and latest login-log rows;
    audited ``view_person`` (viewing personal data is processing under PIPL).

    Raises:
        Problem(not_found): no such account.
    """
    account = _account(account_id)
    app_users = list(db.session.execute(select(User).where(User.account_id == account.id)
                                        .order_by(User.id)).scalars())
    ids = [u.id for u in app_users]
    found = Person(account, app_users, sessions.live_sessions(ids),
                   login_log.latest(ids, PERSON_LOGINS))
    audit.record(actor.name, "view_person", address=actor.address,
                 target=f"account:{account.id}")
    return found


def _user(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise Problem("not_found", _l("There is no user %(id)s.", id=user_id))
    return user


def _state(row: User | Account) -> dict[str, Any]:
    return {"disabled": row.disabled_at is not None, "disabled_by": row.disabled_by,
            "disabled_reason": row.disabled_reason}


def disable_account(actor: Actor, account_id: int, reason: str) -> list[str]:
    """`users.disable_account`, audited ``disable_account``; returns the sessions ended."""
    account = _account(account_id)
    before = _state(account)
    ended = users.disable_account(account, by=actor.name, reason=reason)
    audit.record(actor.name, "disable_account", address=actor.address,
                 target=f"account:{account.id}", reason=reason, before=before,
                 after={**_state(account), "sessions_ended": len(ended)})
    return ended


def enable_account(actor: Actor, account_id: int, reason: str) -> None:
    """`users.enable_account`, audited ``enable_account``."""
    account = _account(account_id)
    before = _state(account)
    users.enable_account(account)
    audit.record(actor.name, "enable_account", address=actor.address,
                 target=f"account:{account.id}", reason=reason, before=before,
                 after=_state(account))


def disable_users(actor: Actor, user_ids: list[int], reason: str) -> int:
    """`users.disable_user` for each (bulk from the search page), each audited
    ``disable_user``; returns how many were found."""
    done = 0
    for user_id in user_ids:
        user = db.session.get(User, user_id)
        if user is None:
            continue
        before = _state(user)
        ended = users.disable_user(user, by=actor.name, reason=reason)
        audit.record(actor.name, "disable_user", address=actor.address,
                     target=f"user:{user.id}", reason=reason, before=before,
                     after={**_state(user), "sessions_ended": len(ended)})
        done += 1
    return done


def enable_users(actor: Actor, user_ids: list[int], reason: str) -> int:
    """`users.enable_user` for each, each audited ``enable_user``; returns how many."""
    done = 0
    for user_id in user_ids:
        user = db.session.get(User, user_id)
        if user is None:
            continue
        before = _state(user)
        users.enable_user(user)
        audit.record(actor.name, "enable_user", address=actor.address,
                     target=f"user:{user.id}", reason=reason, before=before,
                     after=_state(user))
        done += 1
    return done


def end_session(actor: Actor, user_id: int, session_id: str) -> None:
    """`sessions.end_session` (reason ``kicked``, as ``flask users kick``), audited
    ``end_session``.

    Raises:
        Problem(not_found), Problem(session_not_found).
    """
    user = _user(user_id)
    sessions.end_session(user, session_id, "kicked")
    audit.record(actor.name, "end_session", address=actor.address,
                 target=f"user:{user.id}", detail={"session": session_id})


def end_all_sessions(actor: Actor, account_id: int) -> list[str]:
    """`sessions.end_user_sessions` for every app user of the account (reason ``kicked``),
    audited ``end_sessions``."""
    account = _account(account_id)
    ended = sessions.end_user_sessions(users.account_user_ids(account), "kicked")
    audit.record(actor.name, "end_sessions", address=actor.address,
                 target=f"account:{account.id}", after={"sessions_ended": len(ended)})
    return ended


def delete_account(actor: Actor, account_id: int, reason: str) -> list[int]:
    """`rights.erase_account` (as ``flask accounts delete``), audited ``delete_account``
    (how many app users and in which apps; no identity of theirs)."""
    account = _account(account_id)
    app_users = list(db.session.execute(select(User.appid).where(User.account_id == account.id))
                     .scalars())
    erased = rights.erase_account(account.id)
    audit.record(actor.name, "delete_account", address=actor.address,
                 target=f"account:{account_id}", reason=reason,
                 before={"app_users": len(app_users), "appids": sorted(set(app_users))},
                 after={"deleted": True})
    return erased


def export(actor: Actor, account_id: int) -> dict[str, Any]:
    """`rights.export` of the account's person (as ``GET /profile/export``), audited
    ``export_account``."""
    account = _account(account_id)
    first = db.session.execute(select(User).where(User.account_id == account.id)
                               .order_by(User.id).limit(1)).scalar_one_or_none()
    if first is None:
        raise Problem("not_found", _l("There is no account %(id)s.", id=account_id))
    data = rights.export(first)
    audit.record(actor.name, "export_account", address=actor.address,
                 target=f"account:{account.id}")
    return data


@dataclass(frozen=True)
class LoginFilters:
    """The login-log page's filters (None: any)."""

    appid: str | None = None
    outcome: str | None = None
    address: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None


def login_events(actor: Actor, filters: LoginFilters) -> tuple[list[tuple[LoginEvent, int | None]], bool]:
    """A page of login-log rows (newest first) with each row's account id (None: no user
    any more), and whether more follow; audited ``view_login_log``."""
    statement = (select(LoginEvent, User.account_id)
                 .outerjoin(User, User.id == LoginEvent.user_id))
    if filters.appid:
        statement = statement.where(LoginEvent.appid == filters.appid)
    if filters.outcome:
        statement = statement.where(LoginEvent.outcome == filters.outcome)
    if filters.address:
        statement = statement.where(LoginEvent.client_address == filters.address)
    if filters.since:
        statement = statement.where(LoginEvent.at >= filters.since)
    if filters.until:
        statement = statement.where(LoginEvent.at < filters.until)
    if filters.before_id:
        statement = statement.where(LoginEvent.id < filters.before_id)
    rows = [(event, account_id) for event, account_id in db.session.execute(
        statement.order_by(LoginEvent.id.desc()).limit(PAGE + 1))]
    audit.record(actor.name, "view_login_log", address=actor.address, detail={
        k: v for k, v in vars(filters).items() if v is not None})
    return rows[:PAGE], len(rows) > PAGE

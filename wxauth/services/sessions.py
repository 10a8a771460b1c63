"""The login state: JWT access and refresh tokens, rotation and revocation, the user a token
names, and whether the stored session_key is still WeChat's.

Every token carries ``sub`` (openid), ``appid``, ``sid`` (the session: the login's token
family, one per ``POST /auth/login``, kept through refreshes; ``fam`` in tokens from before
ES256) and ``ver`` (the user's token version), signed as `issue` says.

The token family is the session, and its `LoginSession` row is the one truth about it: each
login adds the row (id = ``fam``, client address, User-Agent, the ``jti`` of its refresh
token) in the login's own transaction, with its login-log row (`login_log.add_success`).
Nothing about a session lives in the shared store (Redis): a Redis failover or restart
forgets no logout, and no authenticated request needs Redis.

- Every authenticated request loads its user and its session's row in one statement
  (`user_for_claims`): a token whose session ended (logout, `end_session`,
  `end_user_sessions`, ``MAX_SESSIONS_PER_USER``, a reused refresh token, a disable) or has
  no row (deleted, or issued before sessions existed) is refused, 401 ``token_revoked``, on
  every worker and instance from the next request on. A disabled user (or account) is
  refused first, 403 ``user_disabled``, refresh included.
- Refresh rotates: the row holds the ``jti`` of the one refresh token that may be used; a
  refresh swaps it for the new token's in one conditional ``UPDATE`` (`rotate`). Presenting
  any other refresh token of the session (a stolen, replayed one) ends the session (reason
  ``reused``). A session from before ``refresh_jti`` existed has none: its refresh tokens are
  refused (token_revoked) and the client logs in again; its access tokens work until they
  expire.
- `users revoke-tokens` / `users delete` / an account deletion (`rights`) bump or remove the
  user: every token of theirs fails, also once the same openid is back (a token older than
  its user is refused, `check_version`).
"""

from __future__ import annotations

import functools
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from flask import current_app
from flask_jwt_extended import create_access_token, create_refresh_token
from sqlalchemy import bindparam, select, update

from ..errors import Problem
from ..extensions import db
from ..i18n import _l
from ..infra.store import LockTimeout
from ..models import Account, LoginSession, User, utcnow
from ..wechat.client import WeChatError
from ..state import state
from . import keys, login, login_log, programs
from .login_log import Client

log = logging.getLogger(__name__)


def _seconds(value: int | timedelta) -> int:
    return int(value.total_seconds()) if isinstance(value, timedelta) else int(value)


def access_lifetime() -> int:
    return _seconds(current_app.config["JWT_ACCESS_TOKEN_EXPIRES"])


def refresh_lifetime() -> int:
    return _seconds(current_app.config["JWT_REFRESH_TOKEN_EXPIRES"])


def new_jti() -> str:
    """A token id: 32 hex digits (``LoginSession.refresh_jti``'s size)."""
    return uuid.uuid4().hex


def issue(user: User, family: str, refresh_jti: str, issuer: str) -> dict[str, Any]:
    """A new access + refresh pair for `user` in session `family`; the refresh token's
    ``jti`` is `refresh_jti` (the one its session row holds). Signed with the current key
    (`keys.KeyRing.signer`, its ``kid`` in the header) or, with HS256, ``JWT_SECRET_KEY``.

    Claims: ``sub`` (openid), ``appid``, ``sid`` (the session: `family`), ``ver``, ``jti``,
    ``iat``, ``nbf``, ``exp``, ``type``, ``iss`` (`issuer`) and ``aud`` (``JWT_AUDIENCE``,
    when set).

    Returns ``{"access_token", "token_type", "expires_in" (s), "refresh_token"}``.
    """
    signer = state().keyring.signer()
    headers = {"kid": signer.kid} if signer else None
    claims = {"appid": user.appid, "sid": family, "ver": user.token_version, "iss": issuer}
    audience = current_app.config["JWT_AUDIENCE"]
    if audience:
        claims["aud"] = audience
    with keys.signing_with(signer):
        return {
            "access_token": create_access_token(identity=user.openid, additional_claims=claims,
                                                additional_headers=headers),
            "token_type": "Bearer",
            "expires_in": access_lifetime(),
            "refresh_token": create_refresh_token(
                identity=user.openid, additional_claims={**claims, "jti": refresh_jti},
                additional_headers=headers),
        }


def log_in(appid: str | None, code: str, issuer: str,
           client: Client = Client()) -> dict[str, Any]:
    """Log in with a ``wx.login`` code: code2Session with mini-program `appid` (the only one
    when None), the login transaction (`login.login`) with the new session and the login-log
    row, a new token pair. `client`: the address and User-Agent stored with them.

    A failure writes its login-log row (`login_log.record_failure`) and raises. With
    ``MAX_SESSIONS_PER_USER`` set, the user's oldest live sessions beyond it are ended.

    Returns:
        `issue`'s pair plus ``is_new_user``, ``is_new_account`` and ``user`` (the User).

    Raises:
        Problem(unknown_app | invalid_request) for the appid; the WeChat errors of
        code2Session (InvalidCode, CodeUsed, UserBlocked, WeChatTimeout…);
        login.UserDisabled (403 user_disabled).
    """
    family, refresh_jti = new_jti(), new_jti()

    def record(user: User, is_new_user: bool, now: datetime) -> None:
        login_log.add_success(user, is_new_user, client, now)
        start_session(user, family, refresh_jti, client, now)

    try:
        program = programs.get(appid)
        appid = program.appid
        result = login.login(appid, program.code2session(code), record)
    except Exception as exc:
        login_log.record_failure(appid, client, exc, getattr(exc, "user_id", None))
        raise
    return {**issue(result.user, family, refresh_jti, issuer), "is_new_user": result.is_new_user,
            "is_new_account": result.is_new_account, "user": result.user}


@functools.cache
def insert_session_stmt():
    """INSERT a session row (the values as parameters), built once."""
    return LoginSession.__table__.insert()


def start_session(user: User, family: str, refresh_jti: str, client: Client,
                  now: datetime) -> list[str]:
    """Add the session row of a login (its refresh token's `refresh_jti`) to its transaction;
    returns the sessions that ``MAX_SESSIONS_PER_USER`` ends (marked ended in the same
    transaction)."""
    db.session.execute(insert_session_stmt(), {
        "id": family, "user_id": user.id, "appid": user.appid, "created_at": now,
        "last_used_at": now, "client_address": client.address, "user_agent": client.user_agent,
        "refresh_jti": refresh_jti})
    limit = current_app.config["MAX_SESSIONS_PER_USER"]
    if not limit:
        return []
    # (the user's row is locked by the login: concurrent logins of one user take turns)
    others = db.session.execute(
        select(LoginSession.id).where(_live(now), LoginSession.user_id == user.id,
                                      LoginSession.id != family)
        .order_by(LoginSession.created_at.desc(), LoginSession.id.desc())).scalars().all()
    beyond = others[limit - 1:]  # the newest limit - 1 stay beside the new one
    mark_ended(beyond, "limit", now)
    return beyond


def _live(now: datetime):
    """The condition of a live session: not ended, its refresh token not expired."""
    return (LoginSession.ended_at.is_(None)
            & (LoginSession.last_used_at > now - timedelta(seconds=refresh_lifetime())))


def mark_ended(ids: list[str], reason: str, now: datetime | None = None) -> None:
    """Mark these sessions ended with `reason`, in the current transaction: once committed,
    their tokens are refused."""
    if not ids:
        return
    db.session.execute(update(LoginSession).where(LoginSession.id.in_(ids),
                                                  LoginSession.ended_at.is_(None))
                       .values(ended_at=now or utcnow(), ended_reason=reason)
                       .execution_options(synchronize_session=False))


def live_sessions(user_ids: list[int]) -> list[LoginSession]:
    """The live sessions of these users (not ended, not expired), newest first."""
    return list(db.session.execute(
        select(LoginSession).where(_live(utcnow()), LoginSession.user_id.in_(user_ids))
        .order_by(LoginSession.created_at.desc())).scalars())


def end_family(family: str, reason: str) -> None:
    """End a session: mark its row ended with `reason` and commit; its tokens are refused by
    every worker and instance from the next request on."""
    mark_ended([family], reason, utcnow())
    db.session.commit()


def end_session(user: User, session_id: str, reason: str = "ended") -> None:
    """End `user`'s live session `session_id` (`end_family`).

    Raises:
        Problem(session_not_found): no live session of `user` has this id.
    """
    found = db.session.execute(
        select(LoginSession.id).where(LoginSession.id == session_id,
                                      LoginSession.user_id == user.id, _live(utcnow()))
    ).scalar_one_or_none()
    if found is None:
        raise Problem("session_not_found", _l("No live session of yours has the id %(id)s.",
                                              id=session_id[:32]))
    end_family(session_id, reason)


def end_user_sessions(user_ids: list[int], reason: str) -> list[str]:
    """End every live session of these users (`end_family`); returns their ids."""
    ids = [session.id for session in live_sessions(user_ids)]
    mark_ended(ids, reason)
    db.session.commit()
    return ids


def refresh(user: User, payload: dict[str, Any], issuer: str) -> dict[str, Any]:
    """Use up the refresh token with claims `payload` (`rotate`) and answer a new pair in the
    same session (token family), issued by `issuer`.

    Raises:
        Problem(token_revoked): the token is not its session's current refresh token (the
        session is then ended, reason ``reused``), or its session ended meanwhile.
    """
    refresh_jti = new_jti()
    rotate(payload, refresh_jti)
    return issue(user, payload["sid"], refresh_jti, issuer)


@functools.cache
def rotate_stmt():
    """UPDATE the session ``:fam`` to refresh token ``:new`` if ``:old`` is its current one
    and it is live."""
    return (update(LoginSession)
            .where(LoginSession.id == bindparam("fam"), LoginSession.ended_at.is_(None),
                   LoginSession.refresh_jti == bindparam("old"))
            .values(refresh_jti=bindparam("new"), last_used_at=bindparam("now"))
            .execution_options(synchronize_session=False))


def rotate(payload: dict[str, Any], refresh_jti: str) -> None:
    """Use a refresh token once: one conditional ``UPDATE`` makes `refresh_jti` the session's
    current refresh token (and moves ``last_used_at``) only if the presented token
    (``payload["jti"]``) is the current one, so two concurrent uses of one token cannot both
    win. Commits.

    Raises:
        Problem(token_revoked), after ending the session (reason ``reused``), when the token
        is not the current one: it was used before, so it was copied. A session from before
        ``refresh_jti`` existed has no current token: refused, the session left as it is.
    """
    fam = payload["sid"]
    swapped = db.session.execute(rotate_stmt(), {"fam": fam, "old": payload.get("jti"),
                                                 "new": refresh_jti, "now": utcnow()}).rowcount
    if swapped == 1:
        db.session.commit()
        return
    current = db.session.execute(select(LoginSession.refresh_jti)
                                 .where(LoginSession.id == fam)).scalar_one_or_none()
    if current is None:
        db.session.rollback()
        raise Problem("token_revoked", _l("This refresh token was issued before the server's "
                                          "upgrade; log in again."))
    end_family(fam, "reused")
    raise Problem("token_revoked",
                  _l("This refresh token was already used; every token of this login is "
                     "now revoked."))


def check_version(user: User | Identity, payload: dict[str, Any]) -> None:
    """Raise Problem(token_revoked) when the user's tokens were revoked after this one, or
    when the token is older than the user's row: it was issued to an earlier user of the same
    openid, deleted since (``users delete``, an account deletion), whose version it may
    share. (``iat`` is whole seconds, cut down: a token issued at the user's creation passes.)
    """
    if payload.get("ver") != user.token_version:
        raise Problem("token_revoked", _l("The user's tokens were revoked."))
    if payload.get("iat", 0) < int(user.created_at.timestamp()):
        raise Problem("token_revoked", _l("The token was issued before this user was created."))


@functools.cache
def select_user_session_stmt(*, with_session_key: bool):
    """`login.select_user_stmt` (``:appid``, ``:openid``) with the id, ``ended_at`` and
    ``refresh_jti`` of the user's session ``:fam`` (NULL when the user has no such session),
    in one statement."""
    session = LoginSession.__table__
    return (login.select_user_stmt(with_session_key=with_session_key)
            .add_columns(session.c.id, session.c.ended_at, session.c.refresh_jti)
            .outerjoin(session, (session.c.id == bindparam("fam"))
                       & (session.c.user_id == User.id)))


class Identity(NamedTuple):
    """Who a token names, as `identity_for_claims` reads it (no ORM object)."""

    id: int
    openid: str
    appid: str
    unionid: str | None
    account_id: int
    token_version: int
    created_at: datetime
    disabled: bool


@functools.cache
def select_identity_stmt():
    """The columns of `Identity` for the user (``:appid``, ``:openid``), whether they or
    their account are disabled, and the id and ``ended_at`` of their session ``:fam``, in
    one Core statement (no ORM loading: the gateway's check, `GET /auth/verify`)."""
    users, accounts, session = User.__table__, Account.__table__, LoginSession.__table__
    disabled = (users.c.disabled_at.is_not(None) | accounts.c.disabled_at.is_not(None))
    return (select(users.c.id, users.c.openid, users.c.appid, users.c.unionid,
                   users.c.account_id, users.c.token_version, users.c.created_at,
                   disabled.label("disabled"), session.c.id, session.c.ended_at)
            .select_from(users.join(accounts, accounts.c.id == users.c.account_id)
                         .outerjoin(session, (session.c.id == bindparam("fam"))
                                    & (session.c.user_id == users.c.id)))
            .where(users.c.appid == bindparam("appid"), users.c.openid == bindparam("openid")))


def _configured_appid(payload: dict[str, Any]) -> str:
    appid = payload.get("appid")
    if appid not in programs.configured():
        raise Problem("token_invalid", _l("The token names a mini-program this server no "
                                          "longer serves."))
    return appid


def _check_live(user: User | Identity, payload: dict[str, Any], session_id: str | None,
                ended_at: datetime | None) -> None:
    """The checks every token passes once its user and session row are read (the order is
    the answer's: disabled, then revoked)."""
    if user.disabled:
        raise login.UserDisabled(user.id)
    check_version(user, payload)
    if session_id is None or ended_at is not None:
        raise Problem("token_revoked", _l("The token has been revoked (its session ended)."))


def user_for_claims(payload: dict[str, Any], *, with_session_key: bool = False,
                    current_refresh: bool = False) -> User:
    """The User a verified token names (``sub`` = openid, ``appid`` claim = the mini-program),
    after checking the token's session (``sid``) is still live: both in one query.
    `with_session_key`: its (deferred) session_key is loaded in the same query.
    `current_refresh`: a refresh token must also be its session's current one (not used up
    by a refresh, not from before the upgrade), as ``POST /auth/refresh`` would require.

    Raises:
        Problem(token_invalid) when the token names an app no longer configured;
        Problem(user_not_found) when the user was deleted; Problem(user_disabled) when
        they or their account are disabled; Problem(token_revoked) when their tokens were
        revoked after this one, or its session ended or does not exist.
    """
    appid = _configured_appid(payload)
    row = db.session.execute(select_user_session_stmt(with_session_key=with_session_key),
                             {"appid": appid, "openid": payload["sub"],
                              "fam": payload.get("sid")}).one_or_none()
    if row is None:
        raise Problem("user_not_found", _l("The token's user no longer exists."))
    user, session_id, ended_at, refresh_jti = row
    _check_live(user, payload, session_id, ended_at)
    if current_refresh and payload.get("type") == "refresh" and payload.get("jti") != refresh_jti:
        raise Problem("token_revoked", _l("This refresh token was already used."))
    return user


def identity_for_claims(payload: dict[str, Any]) -> Identity:
    """`user_for_claims` for an access token, read with one Core statement
    (`select_identity_stmt`) into an `Identity`: the same checks and Problems, less CPU per
    request (the gateway's ``GET /auth/verify``)."""
    appid = _configured_appid(payload)
    with db.engine.connect() as connection:  # no ORM session: nothing of it is needed
        row = connection.execute(select_identity_stmt(),
                                 {"appid": appid, "openid": payload["sub"],
                                  "fam": payload.get("sid")}).one_or_none()
    if row is None:
        raise Problem("user_not_found", _l("The token's user no longer exists."))
    identity = Identity(*row[:8])
    _check_live(identity, payload, row[8], row[9])
    return identity


def session_key_valid(user: User) -> bool:
    """Whether WeChat still holds `user`'s stored session_key (checkSessionKey, with the app's
    access_token). Raises the WeChat errors and LockTimeout of the call."""
    return programs.get(user.appid).check_session_key(user.openid, user.session_key)


def session_key_is_current(user: User) -> bool | None:
    """`session_key_valid`, or None when WeChat could not tell (the failure is logged)."""
    try:
        return session_key_valid(user)
    except (WeChatError, LockTimeout) as exc:
        log.info("checkSessionKey unavailable: %s", exc)
        return None

"""The login state: JWT access and refresh tokens, rotation and revocation, the user a token
names, and whether the stored session_key is still WeChat's.

Every token carries ``sub`` (openid), ``appid``, ``fam`` (the login's token family: one per
``POST /auth/login``, kept through refreshes) and ``ver`` (the user's token version).

The token family is the session: each login adds a `LoginSession` row (id = ``fam``, client
address, User-Agent) in the login's own transaction, with its login-log row
(`login_log.add_success`); a refresh moves its ``last_used_at``. Ending a session (logout,
`end_session`, `end_user_sessions`, ``MAX_SESSIONS_PER_USER``) revokes its family in the
shared store, then marks the row ended. A disabled user (or account) is refused at login and
at every request (403 user_disabled), refresh included.

- Refresh rotates: each refresh token works once. The first use is claimed atomically in the
  shared store; a second use (a stolen, replayed token) revokes the whole family.
- Logout revokes the presented token's family: its access and refresh tokens.
- `users revoke-tokens` / `users delete` / an account deletion (`rights`) bump or remove the
  user: every token of theirs fails, also once the same openid is back (a token older than
  its user is refused, `check_version`).
Revocations live in the shared store (Redis in production) until the tokens would expire.
"""

from __future__ import annotations

import functools
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from flask_jwt_extended import create_access_token, create_refresh_token
from sqlalchemy import select, update

from ..errors import Problem
from ..extensions import db
from ..i18n import _l
from ..infra.store import LockTimeout
from ..models import LoginSession, User, utcnow
from ..state import state
from ..wechat.client import WeChatError
from . import login, login_log, programs
from .login_log import Client

log = logging.getLogger(__name__)


def _seconds(value: int | timedelta) -> int:
    return int(value.total_seconds()) if isinstance(value, timedelta) else int(value)


def access_lifetime() -> int:
    return _seconds(current_app.config["JWT_ACCESS_TOKEN_EXPIRES"])


def refresh_lifetime() -> int:
    return _seconds(current_app.config["JWT_REFRESH_TOKEN_EXPIRES"])


def issue(user: User, family: str | None = None) -> dict[str, Any]:
    """A new access + refresh pair for `user` in `family` (a new family when None).

    Returns ``{"access_token", "token_type", "expires_in" (s), "refresh_token"}``.
    """
    claims = {"appid": user.appid, "fam": family or uuid.uuid4().hex, "ver": user.token_version}
    return {
        "access_token": create_access_token(identity=user.openid, additional_claims=claims),
        "token_type": "Bearer",
        "expires_in": access_lifetime(),
        "refresh_token": create_refresh_token(identity=user.openid, additional_claims=claims),
    }


def log_in(appid: str | None, code: str, client: Client = Client()) -> dict[str, Any]:
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
    family = uuid.uuid4().hex

    def record(user: User, is_new_user: bool, now: datetime) -> None:
        login_log.add_success(user, is_new_user, client, now)
        # Sessions beyond MAX_SESSIONS_PER_USER are revoked before the commit: should the
        # shared store fail, the login fails (503) and writes nothing, instead of leaving
        # sessions marked ended whose tokens still work.
        for old in start_session(user, family, client, now):
            revoke_family(old)

    try:
        program = programs.get(appid)
        appid = program.appid
        result = login.login(appid, program.code2session(code), record)
    except Exception as exc:
        login_log.record_failure(appid, client, exc, getattr(exc, "user_id", None))
        raise
    return {**issue(result.user, family), "is_new_user": result.is_new_user,
            "is_new_account": result.is_new_account, "user": result.user}


@functools.cache
def insert_session_stmt():
    """INSERT a session row (the values as parameters), built once."""
    return LoginSession.__table__.insert()


def start_session(user: User, family: str, client: Client, now: datetime) -> list[str]:
    """Add the session row of a login to its transaction; returns the sessions that
    ``MAX_SESSIONS_PER_USER`` ends (marked ended here; the caller revokes their families)."""
    db.session.execute(insert_session_stmt(), {
        "id": family, "user_id": user.id, "appid": user.appid, "created_at": now,
        "last_used_at": now, "client_address": client.address, "user_agent": client.user_agent})
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
    """Mark these sessions ended with `reason`, in the current transaction (their tokens
    are not revoked here: `end_family`)."""
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
    """End a session: revoke its tokens in the shared store (refused by every worker and
    instance from the next request on), then mark its row ended with `reason` (committed)."""
    revoke_family(family)
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
    for family in ids:
        revoke_family(family)
    mark_ended(ids, reason)
    db.session.commit()
    return ids


def refresh(user: User, payload: dict[str, Any]) -> dict[str, Any]:
    """Use up the refresh token with claims `payload` (`claim_refresh`), move its session's
    ``last_used_at`` and answer a new pair in the same login (token family)."""
    claim_refresh(payload)
    db.session.execute(update(LoginSession).where(LoginSession.id == payload["fam"])
                       .values(last_used_at=utcnow())
                       .execution_options(synchronize_session=False))
    db.session.commit()
    return issue(user, family=payload["fam"])


def revoke_family(family: str) -> None:
    """Refuse every token of this login from now on, on every worker and instance."""
    ttl = max(access_lifetime(), refresh_lifetime())
    state().store.set(f"revoked:fam:{family}", "1", ttl)


def is_revoked(payload: dict[str, Any]) -> bool:
    """flask-jwt-extended's blocklist check: the token's family was revoked."""
    family = payload.get("fam")
    return family is None or state().store.get(f"revoked:fam:{family}") is not None


def claim_refresh(payload: dict[str, Any]) -> None:
    """Use a refresh token once. Raises Problem(token_revoked) on reuse, after revoking the
    family: a rotated token presented again means it was copied."""
    remaining = max(1, int(payload["exp"] - payload["iat"]))
    first_use = state().store.set(f"used:refresh:{payload['jti']}", "1", remaining,
                                   only_if_absent=True)
    if not first_use:
        end_family(payload["fam"], "reused")
        raise Problem("token_revoked",
                      _l("This refresh token was already used; every token of this login is "
                         "now revoked."))


def check_version(user: User, payload: dict[str, Any]) -> None:
    """Raise Problem(token_revoked) when the user's tokens were revoked after this one, or
    when the token is older than the user's row: it was issued to an earlier user of the same
    openid, deleted since (``users delete``, an account deletion), whose version it may
    share. (``iat`` is whole seconds, cut down: a token issued at the user's creation passes.)
    """
    if payload.get("ver") != user.token_version:
        raise Problem("token_revoked", _l("The user's tokens were revoked."))
    if payload.get("iat", 0) < int(user.created_at.timestamp()):
        raise Problem("token_revoked", _l("The token was issued before this user was created."))


def user_for_claims(payload: dict[str, Any], *, with_session_key: bool = False) -> User:
    """The User a verified token names: ``sub`` = openid, ``appid`` claim = the mini-program.
    `with_session_key`: its (deferred) session_key is loaded in the same query.

    Raises:
        Problem(token_invalid) when the token names an app no longer configured;
        Problem(user_not_found) when the user was deleted; Problem(user_disabled) when
        they or their account are disabled; Problem(token_revoked) when their tokens were
        revoked after this one.
    """
    appid = payload.get("appid")
    if appid not in programs.configured():
        raise Problem("token_invalid", _l("The token names a mini-program this server no "
                                          "longer serves."))
    user = login.find_user(appid, payload["sub"], with_session_key=with_session_key)
    if user is None:
        raise Problem("user_not_found", _l("The token's user no longer exists."))
    if user.disabled:
        raise login.UserDisabled(user.id)
    check_version(user, payload)
    return user


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

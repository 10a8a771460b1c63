"""The login state: JWT access and refresh tokens, rotation and revocation, the user a token
names, and whether the stored session_key is still WeChat's.

Every token carries ``sub`` (openid), ``appid``, ``fam`` (the login's token family: one per
``POST /auth/login``, kept through refreshes) and ``ver`` (the user's token version).

- Refresh rotates: each refresh token works once. The first use is claimed atomically in the
  shared store; a second use (a stolen, replayed token) revokes the whole family.
- Logout revokes the presented token's family: its access and refresh tokens.
- `users revoke-tokens` / `users delete` bump or remove the user: every token of theirs fails.
Revocations live in the shared store (Redis in production) until the tokens would expire.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from flask import current_app
from flask_jwt_extended import create_access_token, create_refresh_token

from ..errors import Problem
from ..i18n import _l
from ..infra.store import LockTimeout
from ..models import User
from ..state import state
from ..wechat.client import WeChatError
from . import login, programs

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


def log_in(appid: str | None, code: str) -> dict[str, Any]:
    """Log in with a ``wx.login`` code: code2Session with mini-program `appid` (the only one
    when None), the login transaction (`login.login`), a new token pair.

    Returns:
        `issue`'s pair plus ``is_new_user``, ``is_new_account`` and ``user`` (the User).

    Raises:
        Problem(unknown_app | invalid_request) for the appid; the WeChat errors of
        code2Session (InvalidCode, CodeUsed, UserBlocked, WeChatTimeout…).
    """
    program = programs.get(appid)
    result = login.login(program.appid, program.code2session(code))
    return {**issue(result.user), "is_new_user": result.is_new_user,
            "is_new_account": result.is_new_account, "user": result.user}


def refresh(user: User, payload: dict[str, Any]) -> dict[str, Any]:
    """Use up the refresh token with claims `payload` (`claim_refresh`) and answer a new
    pair in the same login (token family)."""
    claim_refresh(payload)
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
        revoke_family(payload["fam"])
        raise Problem("token_revoked",
                      _l("This refresh token was already used; every token of this login is "
                         "now revoked."))


def check_version(user: User, payload: dict[str, Any]) -> None:
    """Raise Problem(token_revoked) when the user's tokens were revoked after this one."""
    if payload.get("ver") != user.token_version:
        raise Problem("token_revoked", _l("The user's tokens were revoked."))


def user_for_claims(payload: dict[str, Any], *, with_session_key: bool = False) -> User:
    """The User a verified token names: ``sub`` = openid, ``appid`` claim = the mini-program.
    `with_session_key`: its (deferred) session_key is loaded in the same query.

    Raises:
        Problem(token_invalid) when the token names an app no longer configured;
        Problem(user_not_found) when the user was deleted; Problem(token_revoked) when their
        tokens were revoked after this one.
    """
    appid = payload.get("appid")
    if appid not in programs.configured():
        raise Problem("token_invalid", _l("The token names a mini-program this server no "
                                          "longer serves."))
    user = login.find_user(appid, payload["sub"], with_session_key=with_session_key)
    if user is None:
        raise Problem("user_not_found", _l("The token's user no longer exists."))
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

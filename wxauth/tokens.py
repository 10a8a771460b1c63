"""The login state: JWT access and refresh tokens, rotation and revocation.

Every token carries ``sub`` (openid), ``appid``, ``fam`` (the login's token family: one per
``POST /auth/login``, kept through refreshes) and ``ver`` (the user's token version).

- Refresh rotates: each refresh token works once. The first use is claimed atomically in the
  shared store; a second use (a stolen, replayed token) revokes the whole family.
- Logout revokes the presented token's family: its access and refresh tokens.
- `users revoke-tokens` / `users delete` bump or remove the user: every token of theirs fails.
Revocations live in the shared store (Redis in production) until the tokens would expire.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from flask import current_app
from flask_jwt_extended import create_access_token, create_refresh_token

from . import shared_store
from .errors import Problem
from .models import User


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


def revoke_family(family: str) -> None:
    """Refuse every token of this login from now on, on every worker and instance."""
    ttl = max(access_lifetime(), refresh_lifetime())
    shared_store().set(f"revoked:fam:{family}", "1", ttl)


def is_revoked(payload: dict[str, Any]) -> bool:
    """flask-jwt-extended's blocklist check: the token's family was revoked."""
    family = payload.get("fam")
    return family is None or shared_store().get(f"revoked:fam:{family}") is not None


def claim_refresh(payload: dict[str, Any]) -> None:
    """Use a refresh token once. Raises Problem(token_revoked) on reuse, after revoking the
    family: a rotated token presented again means it was copied."""
    remaining = max(1, int(payload["exp"] - payload["iat"]))
    first_use = shared_store().set(f"used:refresh:{payload['jti']}", "1", remaining,
                                   only_if_absent=True)
    if not first_use:
        revoke_family(payload["fam"])
        raise Problem("token_revoked",
                      "This refresh token was already used; every token of this login is "
                      "now revoked.")


def check_version(user: User, payload: dict[str, Any]) -> None:
    """Raise Problem(token_revoked) when the user's tokens were revoked after this one."""
    if payload.get("ver") != user.token_version:
        raise Problem("token_revoked", "The user's tokens were revoked.")

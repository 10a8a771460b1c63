"""Service clients: the team's services that call ``/oauth/…`` (`wxauth.web.oauth`) with HTTP
Basic authentication (``client_id:secret``).

An operator creates one with ``flask clients add NAME --scope …`` (`add`): its secret is
shown once and only its argon2id hash is stored (`models.ServiceClient`). A client holds
scopes (`SCOPES`):

- ``introspect``: ``POST /oauth/introspect``, RFC 7662 token introspection (`introspect`);
- ``wechat_token``: ``GET /oauth/wechat/access_token``, the WeChat access_token this server
  already keeps (`wechat_access_token`).

Failed authentications are logged (one WARNING with the client_id given and the client's
address, never the secret) and rate-limited per address by the web layer
(``CLIENT_AUTH_RATE_LIMIT``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from sqlalchemy import select

from ..errors import Problem
from ..extensions import db
from ..i18n import _l
from ..models import ServiceClient
from ..state import state
from . import programs, sessions

log = logging.getLogger(__name__)

SCOPES = ("introspect", "wechat_token")
NAME_SHAPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
MAX_VERIFIED_CLIENTS = 256  # per process; the cache starts over when full
INACTIVE: dict[str, Any] = {"active": False}

_hasher = PasswordHasher()  # argon2id, argon2-cffi's defaults (RFC 9106, low memory)


class ClientError(ValueError):
    """A client cannot be added or removed: the message says why (for the CLI)."""


def add(name: str, scopes: list[str] | tuple[str, ...]) -> tuple[ServiceClient, str]:
    """Create the client `name` holding `scopes` (committed).

    Returns:
        (the client, its secret): the secret exists nowhere else; show it once.

    Raises:
        ClientError: a malformed or taken name, no scope, or a scope not in `SCOPES`.
    """
    if not NAME_SHAPE.match(name):
        raise ClientError(f"name {name!r}: use 1 to 64 letters, digits, '.', '_' or '-'")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ClientError(f"scope {', '.join(unknown) or '(none)'}: choose from "
                          f"{', '.join(SCOPES)}")
    if find(name) is not None:
        raise ClientError(f"a client named {name!r} exists already")
    secret = secrets.token_urlsafe(32)
    client = ServiceClient(name=name, client_id="svc_" + secrets.token_hex(12),
                           secret_hash=_hasher.hash(secret),
                           scopes=" ".join(dict.fromkeys(scopes)))
    db.session.add(client)
    db.session.commit()
    return client, secret


def all_clients() -> list[ServiceClient]:
    """Every client, by name."""
    return list(db.session.execute(select(ServiceClient).order_by(ServiceClient.name)).scalars())


def find(name: str) -> ServiceClient | None:
    """The client named `name`, or None."""
    return db.session.execute(
        select(ServiceClient).where(ServiceClient.name == name)).scalar_one_or_none()


def remove(name: str) -> ServiceClient:
    """Delete the client `name` (committed): its next call answers 401 invalid_client, on
    every instance. Raises ClientError when there is none."""
    client = find(name)
    if client is None:
        raise ClientError(f"no client named {name!r}")
    db.session.delete(client)
    db.session.commit()
    return client


def authenticate(client_id: str | None, secret: str | None, scope: str,
                 address: str | None) -> ServiceClient:
    """The client `client_id` when `secret` is its secret and it holds `scope`.

    `address` (the caller's) goes in the WARNING line a failure writes, with the client_id
    given (at most 64 characters of it), never the secret.

    Raises:
        Problem(invalid_client): no credentials, an unknown client, a wrong secret or a
        missing scope (one answer for all: a caller learns nothing of which).
    """
    client = None
    if client_id and secret:
        client = db.session.execute(select(ServiceClient).where(
            ServiceClient.client_id == client_id)).scalar_one_or_none()
    if client is None or not _secret_matches(client, secret):
        reason = "no credentials" if not (client_id and secret) else (
            "unknown client" if client is None else "wrong secret")
    elif scope not in client.scope_list:
        reason = f"no scope {scope}"
    else:
        return client
    log.warning("service client authentication failed (%s): client_id %r from %s", reason,
                (client_id or "")[:64], address or "-")
    raise Problem("invalid_client", _l("Client authentication failed."))


def _secret_matches(client: ServiceClient, secret: str) -> bool:
    """Whether `secret` is the client's: argon2 the first time per process, then the SHA-256
    of the secret verified with the stored hash (`AppState.verified_clients`)."""
    digest = hashlib.sha256(secret.encode()).digest()
    cache = state().verified_clients
    known = cache.get(client.client_id)
    if known is not None and known[0] == client.secret_hash:
        return hmac.compare_digest(known[1], digest)
    try:
        _hasher.verify(client.secret_hash, secret)
    except (VerificationError, InvalidHashError):
        return False
    if len(cache) >= MAX_VERIFIED_CLIENTS:
        cache.clear()
    cache[client.client_id] = (client.secret_hash, digest)
    return True


def introspect(claims: dict[str, Any], issuer: str) -> dict[str, Any]:
    """RFC 7662's answer for a token whose signature, times and claims checked out (`claims`,
    from `wxauth.web.security.verified_claims`).

    Returns:
        `INACTIVE` (``{"active": false}``, nothing else) when `sessions.user_for_claims`
        refuses the token (user deleted or disabled, session ended — logout, kick, limit,
        reuse —, tokens revoked, a refresh token used up or from before the upgrade, app no
        longer served); else ``{"active": true, "sub" (openid), "appid", "sid" (the
        session id), "jti", "exp", "iat" (seconds since the epoch), "iss" (the token's, or
        `issuer` for a token from before ES256, which carries none), "token_type" ("access"
        or "refresh"), "unionid" (null when none), "account_id"}``, and ``"aud"`` when the
        token has one.
    """
    try:
        user = sessions.user_for_claims(claims, current_refresh=True)
    except Problem:
        return dict(INACTIVE)
    answer = {"active": True, "sub": claims["sub"], "appid": claims["appid"],
              "sid": claims["sid"], "jti": claims["jti"], "exp": claims["exp"],
              "iat": claims["iat"], "iss": claims.get("iss", issuer),
              "token_type": claims["type"], "unionid": user.unionid,
              "account_id": user.account_id}
    if "aud" in claims:
        answer["aud"] = claims["aud"]
    return answer


def wechat_access_token(appid: str | None) -> dict[str, Any]:
    """``{"access_token", "expires_in" (whole seconds left)}``: WeChat's access_token of
    mini-program `appid` (the only one when None and one is served), from the server's cache
    (`programs.MiniProgram.access_token`): no fetch when one is cached, never a forced
    refresh. Never logged.

    Raises:
        Problem(unknown_app) for an appid not served; Problem(invalid_request) when `appid`
        is None and several are; the WeChat errors and LockTimeout of a fetch.
    """
    token, expires_in = programs.get(appid).access_token()
    return {"access_token": token, "expires_in": expires_in}

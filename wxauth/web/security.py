"""The login state on HTTP: the Bearer-token check of every protected view.

`login_required` replaces flask-jwt-extended's ``jwt_required`` and its callback hooks with
one decorator that checks, in this order, and answers 401 problems (403 for a disabled user):

1. the ``Authorization: Bearer <token>`` header (``authorization_required``, ``token_invalid``);
2. the token itself, with flask-jwt-extended's public ``decode_token`` (signature, algorithm,
   ``exp``/``nbf`` with ``JWT_DECODE_LEEWAY``; ``token_expired``, ``token_invalid``), then
   its claims against `CLAIMS` (each present, of its type; ``token_invalid``): a token signed
   with the right key (leaked) still cannot carry a list, a NaN or a NUL further in;
3. its type, access or refresh (``token_invalid``);
4. its user and its session (token family), loaded in one query by
   `services.sessions.user_for_claims` (or, for a view that needs only who the token names,
   ``GET /auth/verify``, without the ORM by `services.sessions.identity_for_claims`)
   (``user_not_found``, 403 ``user_disabled`` when an
   operator disabled the user or their account, ``token_revoked`` when its session ended —
   logout, kick, session limit, reuse — or after ``users revoke-tokens`` or a disable,
   ``token_invalid`` for an app no longer served). The database is the one truth: no
   shared store (Redis) is asked.
Views read the result with `current_user()` and `current_claims()`.

Verified tokens are remembered per process (`AppState.verified_tokens`, at most
`MAX_VERIFIED_TOKENS`) until their ``exp``: a token seen before skips step 2 only; the
session and user check runs on every request. Reason: decoding is the costliest step of an
authenticated request, and a token that verified once verifies again until it expires
(README, Performance).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import jwt as pyjwt
from flask import current_app, g, request
from flask_jwt_extended import decode_token
from flask_jwt_extended.exceptions import JWTExtendedException

from ..errors import AUTH_CODES, Problem, documents_problems
from ..i18n import _l
from ..models import User
from ..services import sessions
from ..state import state
from ..wechat import jsontext

MAX_VERIFIED_TOKENS = 1024  # per process; the cache starts over when full
BEARER_DOC = [{"bearerAuth": []}]


def login_required(blp, *problems: str, refresh: bool = False, verify_type: bool = True,
                   with_session_key: bool = False, identity_only: bool = False):
    """Decorate a view of `blp` that needs a login state; put it right under ``@blp.route``.

    Args:
        problems: the other problem codes the view can answer (documented with the 401s).
        refresh: require a refresh token instead of an access token.
        verify_type: False accepts either type (logout).
        with_session_key: the view's service decrypts with the user's session_key: load it
            with the user, in the same query (it is deferred otherwise).
        identity_only: the view needs only who the token names: `current_user()` is a
            `sessions.Identity` read without the ORM (same checks, less CPU).
    """

    def decorator(view):
        documented = blp.doc(security=BEARER_DOC)(
            documents_problems(blp, *problems, *AUTH_CODES)(view))

        @functools.wraps(documented)
        def wrapper(*args, **kwargs):
            try:
                authenticate(refresh=refresh, verify_type=verify_type,
                             with_session_key=with_session_key, identity_only=identity_only)
            except Problem as exc:
                if exc.kind.status == 401:  # RFC 6750 §3
                    exc.headers.setdefault("WWW-Authenticate", _challenge(exc.kind.code))
                raise
            return documented(*args, **kwargs)

        return wrapper

    return decorator


def _challenge(code: str) -> str:
    """The ``WWW-Authenticate`` value of a 401 answer `code` (RFC 6750 §3: no error code
    when the request carried no token)."""
    if code == "authorization_required":
        return 'Bearer realm="wxauth"'
    return 'Bearer error="invalid_token"'


def authenticate(*, refresh: bool = False, verify_type: bool = True,
                 with_session_key: bool = False,
                 identity_only: bool = False) -> User | sessions.Identity:
    """Check the request's Bearer token and load its user (see the module docstring; an
    `sessions.Identity` with `identity_only`); raises the 401 Problems listed there."""
    claims = verified_claims(_bearer_token())
    if verify_type and claims.get("type") != ("refresh" if refresh else "access"):
        raise Problem("token_invalid", _l("Only refresh tokens are allowed here.") if refresh
                      else _l("Only access tokens are allowed here."))
    g.wxauth_claims = claims
    if identity_only:
        user = sessions.identity_for_claims(claims)
    else:
        user = sessions.user_for_claims(claims, with_session_key=with_session_key)
    g.wxauth_user = user
    return user


def current_user() -> User:
    """The user of the request's token (after `login_required`; a `sessions.Identity` after
    ``login_required(…, identity_only=True)``)."""
    return g.wxauth_user


def current_claims() -> dict[str, Any]:
    """The claims of the request's token (after `login_required`)."""
    return g.wxauth_claims


def issuer() -> str:
    """The issuer of the tokens (``iss``) and of the discovery document: ``JWT_ISSUER``, else
    ``API_BASE_URL``, else the URL root of the request (no trailing slash)."""
    cfg = current_app.config
    return cfg["JWT_ISSUER"] or cfg["API_BASE_URL"] or request.url_root.rstrip("/")


def _bearer_token() -> str:
    header = request.headers.get("Authorization")
    if header is None:
        raise Problem("authorization_required", _l("This endpoint needs a login state."))
    scheme, _, token = header.strip().partition(" ")
    if scheme != "Bearer" or not token.strip():
        raise Problem("token_invalid",
                      _l("Missing 'Bearer <token>' in the Authorization header."))
    return token.strip()


MAX_TIME = 253402300799  # seconds: 9999-12-31T23:59:59Z, the last time datetime can hold


def _text(value: Any) -> bool:
    return jsontext.is_clean_text(value) and 0 < len(value) <= 256


def _time(value: Any) -> bool:  # seconds since the epoch; NaN fails both comparisons
    return type(value) in (int, float) and 0 <= value <= MAX_TIME


def _version(value: Any) -> bool:
    return type(value) is int and 0 <= value < 2 ** 31


# The claims of the tokens `sessions.issue` signs and what each must hold (bool is not int
# here): a signed token whose claims are missing or malformed is token_invalid.
# (``sid`` is ``fam`` in tokens from before ES256: `verified_claims` renames it)
CLAIMS: dict[str, Callable[[Any], bool]] = {
    "sub": _text, "appid": _text, "sid": _text, "jti": _text, "ver": _version,
    "exp": _time, "iat": _time, "type": lambda value: value in ("access", "refresh")}
OPTIONAL_CLAIMS: dict[str, Callable[[Any], bool]] = {"nbf": _time, "iss": _text, "aud": _text}


def _malformed_claim(claims: dict[str, Any]) -> str | None:
    """The first claim of `CLAIMS` missing or malformed, or of `OPTIONAL_CLAIMS` malformed;
    None when the claims are well-formed."""
    for name, valid in CLAIMS.items():
        if name not in claims or not valid(claims[name]):
            return name
    return next((name for name, valid in OPTIONAL_CLAIMS.items()
                 if name in claims and not valid(claims[name])), None)


def verified_claims(encoded: str) -> dict[str, Any]:
    """The claims of a token whose signature and times check out and whose claims are
    `CLAIMS` (a copy: callers may change it). Raises Problem(token_expired) or
    Problem(token_invalid)."""
    cache = state().verified_tokens
    claims = cache.get(encoded)
    if claims is not None and claims["exp"] + current_app.config["JWT_DECODE_LEEWAY"] > time.time():
        return dict(claims)
    try:
        claims = decode_token(encoded)
    except pyjwt.ExpiredSignatureError:
        raise Problem("token_expired", _l("The token has expired.")) from None
    except (pyjwt.InvalidTokenError, JWTExtendedException) as exc:
        raise Problem("token_invalid", _l("The token is not valid (%(reason)s).",
                                          reason=str(exc))) from None
    if "fam" in claims and "sid" not in claims:  # issued before ES256
        claims["sid"] = claims.pop("fam")
    malformed = _malformed_claim(claims)
    if malformed:
        raise Problem("token_invalid", _l("The token is not valid (%(reason)s).",
                                          reason=f"claim {malformed} missing or malformed"))
    if len(cache) >= MAX_VERIFIED_TOKENS:
        cache.clear()
    cache[encoded] = dict(claims)
    return claims

"""Blueprint `auth`: code login (``POST /auth/login``) and the JWT login state."""

from __future__ import annotations

from flask import current_app, request
from flask_jwt_extended import get_current_user, get_jwt, jwt_required

from . import apps, tokens, users
from .errors import AUTH_CODES, WECHAT_CODES, Problem, documents_problems
from .extensions import jwt
from .ratelimit import limited
from .schemas import Blueprint, LoginResultSchema, LoginSchema, SessionSchema, TokenPairSchema

blp = Blueprint("auth", __name__, url_prefix="/auth", description="Login with wx.login codes")

LOGIN_PROBLEMS = ("invalid_request", "unknown_app", "payload_too_large", "rate_limited",
                  "invalid_code", "code_used", "user_blocked", *WECHAT_CODES)


def uses_session_key(view):
    """Mark a view that decrypts with the user's session_key: its user is loaded with the
    key in one query (the key is deferred otherwise). Put it nearest the function."""
    view.uses_session_key = True
    return view


@jwt.user_lookup_loader
def _load_user(_header, payload):
    """The User named by the token: ``sub`` = openid, ``appid`` claim = the mini-program.
    None (→ 401 user_not_found) when deleted; 401 token_revoked when their tokens were;
    401 token_invalid when the token names an app no longer configured."""
    appid = payload.get("appid")
    if appid not in apps.configured():
        raise Problem("token_invalid", "The token names a mini-program this server no longer "
                      "serves")
    view = current_app.view_functions.get(request.endpoint)
    user = users.find_user(appid, payload["sub"],
                           with_session_key=getattr(view, "uses_session_key", False))
    if user is not None:
        tokens.check_version(user, payload)
    return user


@jwt.token_in_blocklist_loader
def _is_revoked(_header, payload):
    return tokens.is_revoked(payload)


@blp.route("/login", methods=["POST"])
@limited("login_rate_limit")  # counted before the body is parsed
@blp.arguments(LoginSchema)
@blp.response(200, LoginResultSchema)
@documents_problems(blp, *LOGIN_PROBLEMS)
def login(args):
    """Exchange a wx.login code for a login state.

    Calls WeChat's auth.code2Session, creates or updates the user and answers a JWT
    (HS256, ``sub`` = openid) valid ``expires_in`` seconds (7 days by default). Send it
    back as ``Authorization: Bearer <access_token>``. When the server serves several
    mini-programs, ``appid`` says which one is logging in. The ``refresh_token`` (30 days) gets
    a new pair from ``POST /auth/refresh``. Limited per client IP (429 ``rate_limited``).
    """
    program = apps.get(args.get("appid"))
    session = program.client.code2session(args["code"])
    result = users.login(program.appid, session)
    return {**tokens.issue(result.user), "is_new_user": result.is_new_user,
            "is_new_account": result.is_new_account, "user": result.user}


@blp.route("/refresh", methods=["POST"])
@jwt_required(refresh=True)
@blp.response(200, TokenPairSchema)
@documents_problems(blp, *AUTH_CODES)
@blp.doc(security=[{"bearerAuth": []}])
def refresh():
    """A new access token and refresh token for ``Authorization: Bearer <refresh_token>``.

    The refresh token presented is used up (rotation); presenting it again revokes every
    token of that login (401 ``token_revoked``).
    """
    payload = get_jwt()
    tokens.claim_refresh(payload)
    return tokens.issue(get_current_user(), family=payload["fam"])


@blp.route("/logout", methods=["POST"])
@jwt_required(verify_type=False)
@blp.response(204)
@documents_problems(blp, *AUTH_CODES)
@blp.doc(security=[{"bearerAuth": []}])
def logout():
    """Revoke the presented token (access or refresh) and every token of the same login."""
    tokens.revoke_family(get_jwt()["fam"])
    return ""


@blp.route("/session", methods=["GET"])
@jwt_required()
@blp.response(200, SessionSchema)
@documents_problems(blp, *WECHAT_CODES, *AUTH_CODES)
@blp.doc(security=[{"bearerAuth": []}])
@uses_session_key
def session_state():
    """Whether WeChat still holds the user's stored session_key (checkSessionKey).

    ``false`` means encrypted data from the client will not decrypt: call ``wx.login`` and
    log in again before asking the user for encryptedData.
    """
    return {"session_key_valid": session_key_valid(get_current_user())}


def session_key_valid(user) -> bool:
    """Whether WeChat still holds `user`'s stored session_key (checkSessionKey, with the app's
    access_token). Raises the WeChat errors and shared.LockTimeout of the call."""
    program = apps.get(user.appid)
    return program.tokens.call(
        lambda token: program.client.check_session_key(token, user.openid, user.session_key))

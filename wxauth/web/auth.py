"""Blueprint `auth`: code login (``POST /auth/login``) and the JWT login state."""

from __future__ import annotations

from flask import g

from ..errors import WECHAT_CODES, documents_problems
from ..services import sessions
from .ratelimit import limited
from .schemas import Blueprint, LoginResultSchema, LoginSchema, SessionSchema, TokenPairSchema
from .security import current_claims, current_user, login_required

blp = Blueprint("auth", __name__, url_prefix="/auth", description="Login with wx.login codes")

LOGIN_PROBLEMS = ("invalid_request", "unknown_app", "payload_too_large", "rate_limited",
                  "invalid_code", "code_used", "user_blocked", *WECHAT_CODES)


@blp.route("/login", methods=["POST"])
@blp.doc(operationId="login")
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
    result = sessions.log_in(args.get("appid"), args["code"])
    g.login_outcome = "new" if result["is_new_user"] else "returning"  # (web.metrics)
    return result


@blp.route("/refresh", methods=["POST"])
@blp.doc(operationId="refreshToken")
@login_required(blp, refresh=True)
@blp.response(200, TokenPairSchema)
def refresh():
    """Exchange the refresh token for a new access token and refresh token.

    Send ``Authorization: Bearer <refresh_token>``. The refresh token presented is used up
    (rotation); presenting it again revokes every token of that login (401 ``token_revoked``).
    """
    return sessions.refresh(current_user(), current_claims())


@blp.route("/logout", methods=["POST"])
@blp.doc(operationId="logout")
@login_required(blp, verify_type=False)
@blp.response(204)
def logout():
    """Revoke the presented token (access or refresh) and every token of the same login."""
    sessions.revoke_family(current_claims()["fam"])
    return ""


@blp.route("/session", methods=["GET"])
@blp.doc(operationId="getSessionState")
@login_required(blp, *WECHAT_CODES, with_session_key=True)
@blp.response(200, SessionSchema)
def session_state():
    """Whether WeChat still holds the user's stored session_key (checkSessionKey).

    ``false`` means encrypted data from the client will not decrypt: call ``wx.login`` and
    log in again before asking the user for encryptedData.
    """
    return {"session_key_valid": sessions.session_key_valid(current_user())}

"""Blueprint `auth`: code login (``POST /auth/login``) and the JWT login state."""

from __future__ import annotations

from flask import Response, g, request

from ..errors import WECHAT_CODES, documents_problems
from ..models import LoginSession
from ..services import login_log, profile, sessions
from .ratelimit import limited
from .schemas import (Blueprint, LoginResultSchema, LoginSchema, LoginSessionListSchema,
                      SessionSchema, TokenPairSchema)
from .security import current_claims, current_user, issuer, login_required

blp = Blueprint("auth", __name__, url_prefix="/auth", description="Login with wx.login codes")

LOGIN_PROBLEMS = ("invalid_request", "unknown_app", "payload_too_large", "rate_limited",
                  "invalid_code", "code_used", "user_blocked", "user_disabled", *WECHAT_CODES)


def client() -> login_log.Client:
    """The request's client: its address (after TRUSTED_PROXIES) and User-Agent."""
    return login_log.Client(request.remote_addr, request.headers.get("User-Agent"))


@blp.route("/login", methods=["POST"])
@blp.doc(operationId="login")
@limited("login_rate_limit", login_log.write_rate_limited)  # before the body is parsed
@blp.arguments(LoginSchema)
@blp.response(200, LoginResultSchema)
@documents_problems(blp, *LOGIN_PROBLEMS)
def login(args):
    """Exchange a wx.login code for a login state.

    Calls WeChat's auth.code2Session, creates or updates the user and answers a JWT
    (ES256 by default, ``sub`` = openid; other services verify it with the key set at
    /.well-known/jwks.json) valid ``expires_in`` seconds (7 days by default). Send it
    back as ``Authorization: Bearer <access_token>``. When the server serves several
    mini-programs, ``appid`` says which one is logging in. The ``refresh_token`` (30 days) gets
    a new pair from ``POST /auth/refresh``. Limited per client IP (429 ``rate_limited``).

    Each login starts a session (``GET /auth/sessions``) and writes a login-log row, as does
    each failed login. A user an operator disabled is refused (403 ``user_disabled``).

    With ``phone_code`` (the phone-number button's ``e.detail.code``) the phone number is
    bound in the same request, after the login is stored: ``phone`` answers
    ``{"bound": true}``, or ``{"bound": false, "code", "detail"}`` when WeChat refused the
    phone code or failed; the login stands either way.
    """
    result = sessions.log_in(args.get("appid"), args["code"], issuer(), client())
    g.login_outcome = "new" if result["is_new_user"] else "returning"  # (web.metrics)
    if "phone_code" in args:
        result["phone"] = profile.bind_phone_at_login(result["user"], args["phone_code"])
    return result


@blp.route("/refresh", methods=["POST"])
@blp.doc(operationId="refreshToken")
@login_required(blp, refresh=True)
@blp.response(200, TokenPairSchema)
def refresh():
    """Exchange the refresh token for a new access token and refresh token.

    Send ``Authorization: Bearer <refresh_token>``. The refresh token presented is used up
    (rotation); presenting it again revokes every token of that login (401 ``token_revoked``)
    and ends its session. The session's ``last_used_at`` moves.
    """
    return sessions.refresh(current_user(), current_claims(), issuer())


@blp.route("/logout", methods=["POST"])
@blp.doc(operationId="logout")
@login_required(blp, verify_type=False)
@blp.response(204)
def logout():
    """Revoke the presented token (access or refresh) and every token of the same login.

    The login's session ends (``GET /auth/sessions`` no longer lists it)."""
    sessions.end_family(current_claims()["sid"], "logout")
    return ""


# the identity headers of GET /auth/verify (nginx `auth_request_set` reads them)
IDENTITY_HEADERS = {
    "X-Wxauth-Openid": "The user's openid in the mini-program.",
    "X-Wxauth-Appid": "The mini-program's appid.",
    "X-Wxauth-Unionid": "The user's unionid; empty when WeChat gave none.",
    "X-Wxauth-Account-Id": "The person's account id (one per unionid), decimal.",
    "X-Wxauth-Session-Id": "The token's session (GET /auth/sessions), 32 hex digits.",
}


@blp.route("/verify", methods=["GET"])
@blp.doc(operationId="verifyToken")
@login_required(blp, identity_only=True)
@blp.response(204, headers={name: {"description": text, "schema": {"type": "string"}}
                            for name, text in IDENTITY_HEADERS.items()})
def verify():
    """Check the Bearer access token for a gateway (nginx auth_request).

    204 with the caller's identity in ``X-Wxauth-*`` headers when the token is valid, with
    the checks of every protected view (signature, expiry, its session not ended, the user
    not deleted or disabled), so a logout, kick or disable shows at the next request.
    Otherwise the 401 problem with ``WWW-Authenticate: Bearer error="invalid_token"`` (403
    ``user_disabled`` for a disabled user). deploy/nginx/wxauth-protect.conf puts it in
    front of a team's own service."""
    user, claims = current_user(), current_claims()
    values = (user.openid, user.appid, user.unionid or "", str(user.account_id), claims["sid"])
    # a Response: nothing for flask-smorest to serialize; no body, so no Content-Type
    answer = Response(status=204, headers=dict(zip(IDENTITY_HEADERS, values)))
    del answer.headers["Content-Type"]
    return answer


@blp.route("/sessions", methods=["GET"])
@blp.doc(operationId="listSessions")
@login_required(blp)
@blp.response(200, LoginSessionListSchema)
def list_sessions():
    """List the caller's live sessions in this mini-program.

    One session per login, i.e. per device, newest first; ``current`` flags the one this
    token belongs to."""
    family = current_claims()["sid"]
    found = sessions.live_sessions([current_user().id])
    return {"sessions": [{**_fields(s), "current": s.id == family} for s in found]}


def _fields(session: LoginSession) -> dict:
    """The row's columns (the schema answers those it declares)."""
    return {column.key: getattr(session, column.key) for column in LoginSession.__table__.c}


@blp.route("/sessions/<string:session_id>", methods=["DELETE"])
@blp.doc(operationId="endSession")
@login_required(blp, "session_not_found")
@blp.response(204)
def end_session(session_id: str):
    """End one of the caller's sessions.

    Another device's, or this one's: its tokens are refused from the next request on, on
    every server. 404 ``session_not_found`` when no live session of the caller has this id.
    """
    sessions.end_session(current_user(), session_id)
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

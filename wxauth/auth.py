"""Blueprint `auth`: code login (``POST /auth/login``) and the JWT login state."""

from __future__ import annotations

from flask import current_app
from flask_jwt_extended import create_access_token

from . import users
from .errors import documents_problems
from .extensions import jwt
from .schemas import Blueprint, LoginResultSchema, LoginSchema

blp = Blueprint("auth", __name__, url_prefix="/auth", description="Login with wx.login codes")

LOGIN_PROBLEMS = (
    "invalid_request", "payload_too_large", "invalid_code", "code_used", "user_blocked",
    "wechat_rate_limited", "wechat_busy", "wechat_bad_response", "wechat_timeout",
    "wechat_unreachable",
)


@jwt.user_lookup_loader
def _load_user(_header, payload):
    """The User named by the token: ``sub`` = openid, ``appid`` claim = the mini-program."""
    appid = payload.get("appid") or current_app.config["WECHAT_APPID"]
    return users.find_user(appid, payload["sub"])


@blp.route("/login", methods=["POST"])
@blp.arguments(LoginSchema)
@blp.response(200, LoginResultSchema)
@documents_problems(blp, *LOGIN_PROBLEMS)
def login(args):
    """Exchange a wx.login code for a login state.

    Calls WeChat's auth.code2Session, creates or updates the user and answers a JWT
    (HS256, ``sub`` = openid) valid ``expires_in`` seconds (7 days by default). Send it
    back as ``Authorization: Bearer <access_token>``.
    """
    from . import wechat_client

    client = wechat_client()
    session = client.code2session(args["code"])
    user, is_new_user = users.upsert_login(client.appid, session)
    expires_in = current_app.config["JWT_ACCESS_TOKEN_EXPIRES"]
    token = create_access_token(identity=user.openid, additional_claims={"appid": user.appid})
    return {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "is_new_user": is_new_user,
        "user": user,
    }

"""Blueprint `profile`: the logged-in user's profile."""

from __future__ import annotations

from flask import current_app
from flask_jwt_extended import current_user, jwt_required

from . import users
from .errors import AUTH_CODES, documents_problems
from .schemas import Blueprint, EncryptedProfileSchema, ProfilePatchSchema, ProfileSchema

blp = Blueprint("profile", __name__, url_prefix="/profile", description="The user's profile")

DECRYPT_PROBLEMS = ("decrypt_failed", "watermark_mismatch", "watermark_expired",
                    "signature_mismatch")


@blp.route("", methods=["GET"])
@jwt_required()
@blp.response(200, ProfileSchema)
@documents_problems(blp, *AUTH_CODES)
@blp.doc(security=[{"bearerAuth": []}])
def get_profile():
    """The logged-in user's profile."""
    return current_user


@blp.route("", methods=["POST"])
@jwt_required()
@blp.arguments(EncryptedProfileSchema)
@blp.response(200, ProfileSchema)
@documents_problems(blp, "invalid_request", "payload_too_large", *DECRYPT_PROBLEMS, *AUTH_CODES)
@blp.doc(security=[{"bearerAuth": []}])
def post_encrypted_profile(args):
    """Update the profile from getUserProfile/getUserInfo ``e.detail``.

    Send ``encryptedData`` and ``iv`` (base64, as WeChat gives them; ``rawData`` and
    ``signature`` optional, checked when sent). Decrypted (AES-128-CBC) with the session_key
    of the user's last login; the watermark must name this mini-program and be recent.
    WeChat's anonymous values (nickname 微信用户, the grey avatar, empty fields) never
    replace real ones.
    """
    cfg = current_app.config
    return users.apply_encrypted_user_info(
        current_user,
        appid=cfg["WECHAT_APPID"],
        encrypted_data=args["encryptedData"],
        iv=args["iv"],
        raw_data=args.get("rawData"),
        signature=args.get("signature"),
        watermark_max_age=cfg["WECHAT_WATERMARK_MAX_AGE"],
    )


@blp.route("", methods=["PATCH"])
@jwt_required()
@blp.arguments(ProfilePatchSchema)
@blp.response(200, ProfileSchema)
@documents_problems(blp, "invalid_request", "payload_too_large", *AUTH_CODES)
@blp.doc(security=[{"bearerAuth": []}])
def patch_profile(args):
    """Set profile fields directly (``<input type="nickname">``, ``chooseAvatar`` upload URL)."""
    return users.update_profile(current_user, args)

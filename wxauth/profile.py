"""Blueprint `profile`: the logged-in user's profile."""

from __future__ import annotations

import logging

from flask import current_app, request, url_for
from flask_jwt_extended import get_current_user, jwt_required

from . import apps, users
from .auth import session_key_valid, uses_session_key
from .avatars import process_avatar
from .errors import AUTH_CODES, WECHAT_CODES, Problem, documents_problems
from .schemas import (AvatarUploadSchema, Blueprint, EncryptedProfileSchema, PhoneSchema,
                      ProfilePatchSchema, ProfileSchema)
from .shared import LockTimeout
from .wechat import crypto
from .wechat.client import InvalidCode, WeChatBadResponse, WeChatError, phone_info_from

log = logging.getLogger(__name__)

blp = Blueprint("profile", __name__, url_prefix="/profile", description="The user's profile")

DECRYPT_PROBLEMS = ("decrypt_failed", "watermark_mismatch", "watermark_expired",
                    "signature_mismatch")


def session_key_is_current(user) -> bool | None:
    """Ask WeChat (checkSessionKey) whether the stored session_key is current; None when
    WeChat could not tell."""
    try:
        return session_key_valid(user)
    except (WeChatError, LockTimeout) as exc:
        log.info("checkSessionKey unavailable after decrypt_failed: %s", exc)
        return None


def explain_decrypt_failure(user) -> Problem:
    """decrypt_failed, saying whether WeChat considers the stored session_key stale."""
    current = session_key_is_current(user)
    if current is False:
        why = ("The stored session_key is stale (WeChat's checkSessionKey says so): call "
               "wx.login() and log in again, then fetch the data again")
    elif current is True:
        why = ("The stored session_key is still current, so the data was encrypted under an "
               "older one (fetched before the latest wx.login) or altered on the way: fetch it "
               "again and send it right away")
    else:
        why = "encryptedData did not decrypt with the stored session_key"
    return Problem("decrypt_failed", why, session_key_valid=current)


def open_encrypted(user, args) -> dict:
    """Decrypt ``encryptedData``/``iv`` from the request for `user` and check the watermark;
    decrypt_failed says whether the stored session_key is stale."""
    try:
        return users.open_encrypted_data(user, args["encryptedData"], args["iv"],
                                         current_app.config["WECHAT_WATERMARK_MAX_AGE"])
    except crypto.DecryptError:
        raise explain_decrypt_failure(user) from None


@blp.route("", methods=["GET"])
@jwt_required()
@blp.response(200, ProfileSchema)
@documents_problems(blp, *AUTH_CODES)
@blp.doc(security=[{"bearerAuth": []}])
def get_profile():
    """The logged-in user's profile."""
    return get_current_user()


@blp.route("", methods=["POST"])
@jwt_required()
@blp.arguments(EncryptedProfileSchema)
@blp.response(200, ProfileSchema)
@documents_problems(blp, "invalid_request", "payload_too_large", *DECRYPT_PROBLEMS, *AUTH_CODES)
@blp.doc(security=[{"bearerAuth": []}])
@uses_session_key
def post_encrypted_profile(args):
    """Update the profile from getUserProfile/getUserInfo ``e.detail``.

    Send ``encryptedData`` and ``iv`` (base64, as WeChat gives them; ``rawData`` and
    ``signature`` optional, checked when sent). Decrypted (AES-128-CBC) with the session_key
    of the user's last login; the watermark must name this mini-program and be recent.
    WeChat's anonymous values (nickname 微信用户, the grey avatar, empty fields) never
    replace real ones.
    """
    user = get_current_user()
    data = open_encrypted(user, args)
    return users.apply_user_info(user, data, raw_data=args.get("rawData"),
                                 signature=args.get("signature"))


@blp.route("", methods=["PATCH"])
@jwt_required()
@blp.arguments(ProfilePatchSchema)
@blp.response(200, ProfileSchema)
@documents_problems(blp, "invalid_request", "payload_too_large", "content_rejected",
                    *WECHAT_CODES, *AUTH_CODES)
@blp.doc(security=[{"bearerAuth": []}])
def patch_profile(args):
    """Set profile fields directly (``<input type="nickname">``, ``chooseAvatar`` upload URL).

    With ``WECHAT_CONTENT_CHECK=1`` a new nickname goes through WeChat's msgSecCheck v2
    (scene 1): ``risky`` → 422 ``content_rejected``; ``review`` is accepted and logged.
    """
    nickname, user = args.get("nickname"), get_current_user()
    program = apps.get(user.appid)
    if nickname and program.content_check:
        suggest = program.tokens.call(
            lambda token: program.client.msg_sec_check(token, user.openid, nickname, scene=1))
        if suggest == "risky":
            raise Problem("content_rejected", "WeChat's content check rejected this nickname")
        if suggest == "review":
            log.warning("nickname of user %s accepted pending review (msgSecCheck: review)",
                        user.id)
    return users.update_profile(user, args)


@blp.route("/phone", methods=["POST"])
@jwt_required()
@blp.arguments(PhoneSchema)
@blp.response(200, ProfileSchema)
@documents_problems(blp, "invalid_request", "payload_too_large", "invalid_code",
                    *DECRYPT_PROBLEMS, *WECHAT_CODES, *AUTH_CODES)
@blp.doc(security=[{"bearerAuth": []}])
@uses_session_key
def bind_phone(args):
    """Store the user's phone number from ``<button open-type="getPhoneNumber">``.

    Send ``{"code": e.detail.code}`` (base library ≥ 2.21.2; exchanged through WeChat's
    getPhoneNumber with the app's access_token) or, old style, ``{"encryptedData", "iv"}``
    (decrypted with the session_key like the profile). The watermark must name this app.
    """
    user = get_current_user()
    program = apps.get(user.appid)
    if "code" in args:
        code = args["code"]
        try:
            info = program.tokens.call(
                lambda token: program.client.get_phone_number(token, code))
        except InvalidCode as exc:
            raise Problem("invalid_code", (
                f"WeChat rejected the phone code ({exc}). It must be e.detail.code from "
                '<button open-type="getPhoneNumber"> (base library 2.21.2 or later), used '
                "within 5 minutes and only once; a wx.login code is not a phone code"),
                errcode=exc.errcode) from None
        crypto.check_watermark({"watermark": info.watermark}, user.appid, 0)
    else:
        data = open_encrypted(user, args)
        try:
            info = phone_info_from(data)
        except WeChatBadResponse:
            raise Problem("invalid_request", "The decrypted data is not a phone number "
                          "(getPhoneNumber's encryptedData expected)") from None
    return users.update_profile(user, {"phone_number": info.phone_number,
                                       "pure_phone_number": info.pure_phone_number,
                                       "country_code": info.country_code})


@blp.before_request
def _avatar_size_limit():
    """Avatars may be larger than the JSON bodies MAX_CONTENT_LENGTH is sized for."""
    if request.endpoint == "profile.upload_avatar":
        request.max_content_length = current_app.config["AVATAR_MAX_BYTES"] + 16 * 1024


@blp.route("/avatar", methods=["POST"])
@jwt_required()
@blp.arguments(AvatarUploadSchema, location="files")
@blp.response(200, ProfileSchema)
@documents_problems(blp, "invalid_request", "invalid_image", "payload_too_large", *AUTH_CODES)
@blp.doc(security=[{"bearerAuth": []}])
def upload_avatar(args):
    """Upload the ``chooseAvatar`` image (``wx.uploadFile``, multipart field ``file``).

    JPEG, PNG or WebP, recognised by content; at most ``AVATAR_MAX_BYTES``; re-encoded
    (metadata stripped, shrunk to ``AVATAR_MAX_SIDE`` px) and served at a stable URL, which
    becomes ``avatar_url``.
    """
    cfg = current_app.config
    upload = args["file"]
    data = upload.read(cfg["AVATAR_MAX_BYTES"] + 1) if hasattr(upload, "read") else b""
    if not data:
        raise Problem("invalid_image", "The upload is empty")
    if len(data) > cfg["AVATAR_MAX_BYTES"]:
        raise Problem("payload_too_large", f"Avatars are limited to {cfg['AVATAR_MAX_BYTES']} bytes")
    name, encoded = process_avatar(data, cfg["AVATAR_MAX_SIDE"], cfg["AVATAR_MAX_PIXELS"])
    current_app.extensions["storage"].save(name, encoded)
    base = cfg.get("MEDIA_BASE_URL")
    url = f"{base.rstrip('/')}/{name}" if base else url_for("media", name=name, _external=True)
    return users.update_profile(get_current_user(), {"avatar_url": url})

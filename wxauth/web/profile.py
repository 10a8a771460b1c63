"""Blueprint `profile`: the logged-in user's profile."""

from __future__ import annotations

from flask import current_app, request, url_for

from ..errors import WECHAT_CODES, Problem
from ..i18n import _l
from ..services import profile, rights
from ..state import state
from .schemas import (AvatarUploadSchema, Blueprint, DeleteAccountSchema,
                      EncryptedProfileSchema, ExportSchema, PhoneSchema, ProfilePatchSchema,
                      ProfileSchema)
from .security import current_user, login_required

blp = Blueprint("profile", __name__, url_prefix="/profile", description="The user's profile")

DECRYPT_PROBLEMS = ("decrypt_failed", "watermark_mismatch", "watermark_expired",
                    "signature_mismatch")


@blp.route("", methods=["GET"])
@blp.doc(operationId="getProfile")
@login_required(blp)
@blp.response(200, ProfileSchema)
def get_profile():
    """The logged-in user's profile."""
    return current_user()


@blp.route("", methods=["POST"])
@blp.doc(operationId="updateProfileFromEncryptedData")
@login_required(blp, "invalid_request", "payload_too_large", *DECRYPT_PROBLEMS,
                with_session_key=True)
@blp.arguments(EncryptedProfileSchema)
@blp.response(200, ProfileSchema)
def post_encrypted_profile(args):
    """Update the profile from getUserProfile/getUserInfo encrypted data.

    Send their ``e.detail``: ``encryptedData`` and ``iv`` (base64, as WeChat gives them;
    ``rawData`` and ``signature`` optional, checked when sent). Decrypted (AES-128-CBC) with the session_key
    of the user's last login; the watermark must name this mini-program and be recent.
    WeChat's anonymous values (nickname 微信用户, the grey avatar, empty fields) never
    replace real ones.
    """
    return profile.update_from_encrypted(
        current_user(), args["encryptedData"], args["iv"], raw_data=args.get("rawData"),
        signature=args.get("signature"),
        watermark_max_age=current_app.config["WECHAT_WATERMARK_MAX_AGE"])


@blp.route("", methods=["PATCH"])
@blp.doc(operationId="updateProfile")
@login_required(blp, "invalid_request", "payload_too_large", "content_rejected", *WECHAT_CODES)
@blp.arguments(ProfilePatchSchema)
@blp.response(200, ProfileSchema)
def patch_profile(args):
    """Set profile fields directly (the nickname input, the uploaded avatar's URL).

    The nickname from ``<input type="nickname">``, ``avatar_url`` from
    ``POST /profile/avatar`` (the ``chooseAvatar`` image). With ``WECHAT_CONTENT_CHECK=1`` a
    new nickname goes through WeChat's msgSecCheck v2 (scene 1): ``risky`` → 422
    ``content_rejected``; ``review`` is accepted and logged.
    """
    return profile.set_fields(current_user(), args)


@blp.route("", methods=["DELETE"])
@blp.doc(operationId="deleteAccount")
@login_required(blp, "invalid_request", "payload_too_large", "invalid_code", "code_used",
                "user_blocked", "confirmation_mismatch", *WECHAT_CODES)
@blp.arguments(DeleteAccountSchema)
@blp.response(204)
def delete_account(args):
    """Delete the user's account: the person, in every mini-program of this server.

    Send ``{"code"}``: a fresh ``wx.login()`` code from the user's own device, the
    confirmation (403 ``confirmation_mismatch`` when it is another user's). Erases their
    app users (openid, unionid, session_key, nickname, avatar and its file, phone, place
    fields), the account and every session: every token of theirs is refused from the next
    request on. Kept: a marker (HMAC, no openid or unionid in clear) so that the person
    coming back is not new, and the login log's rows until their retention ends, no longer
    linked to a user.
    """
    rights.delete_own_account(current_user(), args["code"])
    return ""


@blp.route("/export", methods=["GET"])
@blp.doc(operationId="exportPersonalData")
@login_required(blp)
@blp.response(200, ExportSchema)
def export():
    """Export everything stored about the user's person.

    One JSON document: the account, its app users in every mini-program, every session and
    the login log's rows. Never the session_key nor any token material. Times are ISO 8601,
    UTC."""
    return rights.export(current_user())


@blp.route("/phone", methods=["POST"])
@blp.doc(operationId="bindPhoneNumber")
@login_required(blp, "invalid_request", "payload_too_large", "invalid_code", *DECRYPT_PROBLEMS,
                *WECHAT_CODES, with_session_key=True)
@blp.arguments(PhoneSchema)
@blp.response(200, ProfileSchema)
def bind_phone(args):
    """Store the user's phone number from the getPhoneNumber button.

    From ``<button open-type="getPhoneNumber">``, send ``{"code": e.detail.code}`` (base
    library ≥ 2.21.2; exchanged through WeChat's getPhoneNumber with the app's access_token) or, old style, ``{"encryptedData", "iv"}``
    (decrypted with the session_key like the profile). The watermark must name this app.
    """
    if "code" in args:
        return profile.bind_phone_code(current_user(), args["code"])
    return profile.bind_phone_encrypted(current_user(), args["encryptedData"], args["iv"],
                                        current_app.config["WECHAT_WATERMARK_MAX_AGE"])


@blp.before_request
def _avatar_size_limit():
    """Avatars may be larger than the JSON bodies MAX_CONTENT_LENGTH is sized for."""
    if request.endpoint == "profile.upload_avatar":
        request.max_content_length = current_app.config["AVATAR_MAX_BYTES"] + 16 * 1024


@blp.route("/avatar", methods=["POST"])
@blp.doc(operationId="uploadAvatar")
@login_required(blp, "invalid_request", "invalid_image", "payload_too_large")
@blp.arguments(AvatarUploadSchema, location="files")
@blp.response(200, ProfileSchema)
def upload_avatar(args):
    """Upload the chooseAvatar image (wx.uploadFile, multipart field file).

    Send the ``chooseAvatar`` temporary file with ``wx.uploadFile``, field ``file``. JPEG,
    PNG or WebP, recognised by content; at most ``AVATAR_MAX_BYTES``; re-encoded (metadata
    stripped, shrunk to ``AVATAR_MAX_SIDE`` px) and served at a stable URL, which becomes
    ``avatar_url``.
    """
    cfg = current_app.config
    upload = args["file"]
    data = upload.read(cfg["AVATAR_MAX_BYTES"] + 1) if hasattr(upload, "read") else b""
    if not data:
        raise Problem("invalid_image", _l("The upload is empty."))
    if len(data) > cfg["AVATAR_MAX_BYTES"]:
        raise Problem("payload_too_large", _l("Avatars are limited to %(limit)s bytes.",
                                               limit=cfg["AVATAR_MAX_BYTES"]))
    return profile.set_avatar(current_user(), data, storage=state().media,
                              max_side=cfg["AVATAR_MAX_SIDE"], max_pixels=cfg["AVATAR_MAX_PIXELS"],
                              url_for_name=_media_url)


def _media_url(name: str) -> str:
    """The public URL of a stored file: ``MEDIA_BASE_URL``/name, else this server's /media."""
    base = current_app.config.get("MEDIA_BASE_URL")
    return f"{base.rstrip('/')}/{name}" if base else url_for("media", name=name, _external=True)

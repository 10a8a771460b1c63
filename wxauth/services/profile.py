"""The user's profile: encrypted profile data, the phone number, the nickname, the avatar.

Every function takes the User (loaded by the caller from the login state) and what the
client sent, already parsed; each commits its change. The session_key is read only here and
in `sessions`, where the user's (deferred) column loads on first use.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import select

from .. import metrics
from ..errors import Problem, localized_detail, problem_for
from ..extensions import db
from ..i18n import _l
from ..infra.media import Storage, avatar_name, process_avatar
from ..models import User, utcnow
from ..wechat import crypto, jsontext
from ..wechat.client import InvalidCode, PhoneInfo, WeChatBadResponse, phone_info_from
from . import programs, signals
from .sessions import session_key_is_current

log = logging.getLogger(__name__)

# invalid_code on /profile/phone: the fix is a new phone code, not a new wx.login
PHONE_CODE_ADVICE = _l("Ask the user to tap the phone-number button again and send its new "
                       "e.detail.code.")

# WeChat's anonymous placeholders since 2022 (getUserProfile): never stored over real data.
ANONYMOUS_NICKNAME = "微信用户"
ANONYMOUS_AVATAR_MARK = "/POgEwh4mIHO4nibH0KlMECNjjGxQUq24ZEaGT4poC6icRiccVGKSyXwibcPq4BWmiaIGuG1icwxaQX6grC9VemZoJ8rg/"

# decrypted userInfo key → User attribute
USER_INFO_FIELDS = {
    "nickName": "nickname",
    "avatarUrl": "avatar_url",
    "gender": "gender",
    "country": "country",
    "province": "province",
    "city": "city",
    "language": "language",
}




def open_encrypted_data(user: User, encrypted_data: bytes, iv: bytes,
                        watermark_max_age: int) -> dict[str, Any]:
    """Decrypt encryptedData with the user's session_key and check its watermark.

    Args:
        encrypted_data, iv: raw bytes (base64-decoded).
        watermark_max_age: seconds; 0 skips the age check.

    Returns:
        The decrypted JSON object.

    Raises:
        crypto.DecryptError, crypto.WatermarkMismatch (not the user's app),
        crypto.WatermarkExpired.
    """
    data = crypto.decrypt(user.session_key, encrypted_data, iv)
    crypto.check_watermark(data, user.appid, watermark_max_age)
    return data


def apply_user_info(user: User, data: dict[str, Any], *, raw_data: str | None,
                    signature: str | None) -> User:
    """Store decrypted getUserProfile/getUserInfo data (from `open_encrypted_data`).

    Args:
        raw_data, signature: optional clear rawData and its sha1 signature; checked when given.

    Raises:
        crypto.SignatureMismatch. Nothing is written when it is raised.
    """
    if raw_data is not None and signature is not None:
        crypto.check_signature(raw_data, signature, user.session_key)
    changes = {attr: data.get(key) for key, attr in USER_INFO_FIELDS.items()}
    unionid = data.get("unionId")
    if isinstance(unionid, str) and unionid:
        changes["unionid"] = unionid
    update_profile(user, _without_placeholders(changes))
    return user


def _without_placeholders(changes: dict[str, Any]) -> dict[str, Any]:
    """Drop WeChat's anonymous values (nickname 微信用户, the grey avatar, empty, gender 0)
    and values that are not clean text (`jsontext.is_clean_text`); cut the rest to the
    column's length."""
    kept = {}
    for attr, value in changes.items():
        if value in (None, "", 0):
            continue
        if attr == "nickname" and value == ANONYMOUS_NICKNAME:
            continue
        if attr == "avatar_url" and ANONYMOUS_AVATAR_MARK in str(value):
            continue
        if attr == "gender" and (type(value) is not int or value not in (1, 2)):
            continue
        if attr != "gender" and not jsontext.is_clean_text(value):
            continue
        if isinstance(value, str):  # never longer than the column
            value = value[: User.__table__.c[attr].type.length]
        kept[attr] = value
    return kept


def update_profile(user: User, changes: dict[str, Any]) -> User:
    """Set the given profile attributes, bump updated_at when something changed, commit."""
    changed = False
    for attr, value in changes.items():
        if getattr(user, attr) != value:
            setattr(user, attr, value)
            changed = True
    if changed:
        user.updated_at = utcnow()
    db.session.commit()
    return user


def explain_decrypt_failure(user: User) -> Problem:
    """decrypt_failed, saying whether WeChat considers the stored session_key stale."""
    current = session_key_is_current(user)
    if current is False:
        why = _l("The stored session_key is stale (WeChat's checkSessionKey says so): call "
                 "wx.login() and log in again, then fetch the data again")
    elif current is True:
        why = _l("The stored session_key is still current, so the data was encrypted under "
                 "an older one (fetched before the latest wx.login) or altered on the way: "
                 "fetch it again and send it right away")
    else:
        why = _l("encryptedData did not decrypt with the stored session_key.")
    return Problem("decrypt_failed", why, session_key_valid=current)


def open_encrypted(user: User, encrypted_data: bytes, iv: bytes,
                   watermark_max_age: int) -> dict[str, Any]:
    """`open_encrypted_data`, where decrypt_failed says whether the stored session_key is
    stale (Problem(decrypt_failed) with ``session_key_valid``). Each failure is counted by
    reason (`wxauth.metrics.DECRYPT_FAILURES`) and logged with it: the reason, the user's
    id and appid, ``session_key_valid``; never the key or the data."""
    try:
        return open_encrypted_data(user, encrypted_data, iv, watermark_max_age)
    except crypto.DecryptError as exc:
        metrics.DECRYPT_FAILURES.labels(exc.reason).inc()
        problem = explain_decrypt_failure(user)
        log.info("decrypt_failed: reason=%s user=%s appid=%s session_key_valid=%s",
                 exc.reason, user.id, user.appid, problem.extra["session_key_valid"],
                 extra={"reason": exc.reason, "user_id": user.id,
                        "session_key_valid": problem.extra["session_key_valid"]})
        raise problem from None


def update_from_encrypted(user: User, encrypted_data: bytes, iv: bytes, *,
                          raw_data: str | None, signature: str | None,
                          watermark_max_age: int) -> User:
    """Store the profile from getUserProfile/getUserInfo ``e.detail`` (raw bytes of
    encryptedData and iv; `watermark_max_age` in seconds, 0 = no age check).

    Raises:
        Problem(decrypt_failed), crypto.WatermarkMismatch, crypto.WatermarkExpired,
        crypto.SignatureMismatch; nothing is written then.
    """
    data = open_encrypted(user, encrypted_data, iv, watermark_max_age)
    return apply_user_info(user, data, raw_data=raw_data, signature=signature)


def set_fields(user: User, changes: dict[str, Any]) -> User:
    """Set plain profile fields (validated by the caller). A new nickname goes through
    WeChat's msgSecCheck v2 (scene 1) when the app's content check is on: ``risky`` →
    Problem(content_rejected); ``review`` is accepted and logged.

    Raises:
        Problem(content_rejected); the WeChat errors of msgSecCheck.
    """
    nickname = changes.get("nickname")
    program = programs.get(user.appid)
    if nickname and program.content_check:
        suggest = program.msg_sec_check(user.openid, nickname, scene=1)
        if suggest == "risky":
            raise Problem("content_rejected",
                          _l("WeChat's content check rejected this nickname."))
        if suggest == "review":
            log.warning("nickname of user %s accepted pending review (msgSecCheck: review)",
                        user.id)
    return update_profile(user, changes)


def bind_phone_code(user: User, code: str, *, at_login: bool = False) -> User:
    """Store the phone number behind a phone button's ``code`` (getPhoneNumber); `at_login`:
    sent with the login (for the `phone_bound` signal).

    Raises:
        Problem(invalid_code) with WeChat's errcode; crypto.WatermarkMismatch; the WeChat
        errors of the call.
    """
    try:
        info = programs.get(user.appid).phone_number(code)
    except InvalidCode as exc:
        raise Problem("invalid_code", _l(
            "WeChat rejected the phone code (%(reason)s). It must be e.detail.code from "
            '<button open-type="getPhoneNumber"> (base library 2.21.2 or later), used '
            "within 5 minutes and only once; a wx.login code is not a phone code",
            reason=str(exc)), advice=PHONE_CODE_ADVICE, errcode=exc.errcode) from None
    crypto.check_watermark({"watermark": info.watermark}, user.appid, 0)
    return _store_phone(user, info, at_login=at_login)


def bind_phone_at_login(user: User, code: str) -> dict[str, Any]:
    """`bind_phone_code` for the ``phone_code`` sent with a login, after the login's
    transaction: a failure does not undo the login, it is reported instead.

    Returns:
        ``{"bound": True}``, or ``{"bound": False, "code", "detail"}`` with the problem code
        the failure would have answered on ``POST /profile/phone`` (invalid_code,
        watermark_mismatch, wechat_*, …), WeChat's ``errcode`` when it gave one and
        ``retry_after`` (seconds) when the problem calls for a wait.

    Raises:
        anything that is not such a failure (a bug).
    """
    try:
        bind_phone_code(user, code, at_login=True)
    except Exception as exc:
        problem = problem_for(exc)
        if problem is None:
            raise
        db.session.rollback()
        log.info("phone number not bound at login of user %s: %s", user.id, problem.kind.code)
        outcome = {"bound": False, "code": problem.kind.code,
                   "detail": localized_detail(problem.kind, problem.detail, problem.advice)}
        if "errcode" in problem.extra:
            outcome["errcode"] = problem.extra["errcode"]
        if "Retry-After" in problem.headers:
            outcome["retry_after"] = int(problem.headers["Retry-After"])
        return outcome
    return {"bound": True}


def bind_phone_encrypted(user: User, encrypted_data: bytes, iv: bytes,
                         watermark_max_age: int) -> User:
    """Store the phone number from getPhoneNumber's old-style encryptedData and iv (bytes).

    Raises:
        Problem(decrypt_failed), Problem(invalid_request) when the data is not a phone
        number, crypto.WatermarkMismatch, crypto.WatermarkExpired.
    """
    data = open_encrypted(user, encrypted_data, iv, watermark_max_age)
    try:
        info = phone_info_from(data)
    except WeChatBadResponse:
        raise Problem("invalid_request", _l("The decrypted data is not a phone number "
                                            "(getPhoneNumber's encryptedData expected).")) from None
    return _store_phone(user, info, at_login=False)


def _store_phone(user: User, info: PhoneInfo, *, at_login: bool) -> User:
    update_profile(user, {"phone_number": info.phone_number,
                          "pure_phone_number": info.pure_phone_number,
                          "country_code": info.country_code})
    signals.send_phone_bound(user, at_login=at_login)
    return user


def set_avatar(user: User, data: bytes, *, storage: Storage, max_side: int, max_pixels: int,
               url_for_name: Callable[[str], str]) -> User:
    """Re-encode an uploaded avatar (bytes), store it and make its URL the user's
    ``avatar_url``; the avatar it replaces is deleted from storage unless another user uses
    it (`forget_avatars`). `max_side`, `max_pixels`: pixels; `url_for_name` gives the public
    URL of a stored name.

    Raises:
        InvalidImage (`wxauth.infra.media`) for anything not a JPEG, PNG or WebP image.
    """
    name, encoded = process_avatar(data, max_side, max_pixels)
    storage.save(name, encoded)
    previous = user.avatar_url
    update_profile(user, {"avatar_url": url_for_name(name)})
    if previous != user.avatar_url:
        forget_avatars(storage, [previous])
    return user


def forget_avatars(storage: Storage, urls: Iterable[str | None]) -> None:
    """Delete the stored files of these avatar URLs (ours only: `avatar_name`) that no user
    uses any more: a replaced avatar, or those of a deleted account. Files are named by
    their content, so two users who uploaded the same image share one file: it stays while
    either uses it. Call after the change committed."""
    names = {name for name in map(avatar_name, urls) if name}
    for name in sorted(names):
        in_use = db.session.execute(select(User.id).where(
            User.avatar_url.endswith(name, autoescape=True)).limit(1)).first()
        if in_use is None:
            storage.delete(name)

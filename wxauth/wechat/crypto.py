"""WeChat open-data cryptography: encryptedData, watermark and rawData signature.

Follows WeChat's "开放数据校验与解密" (open data verification and decryption):
- key = base64decode(session_key) (16 bytes), iv = 16 bytes, AES-128-CBC, PKCS#7 padding;
- the plaintext is a JSON object carrying ``watermark: {"appid", "timestamp"}``;
- ``signature = sha1_hex(rawData + session_key)`` for the clear-text ``rawData``.

Nothing here knows Flask or HTTP. The AES and padding work is pycryptodome's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import time
from typing import Any

from Crypto.Util.Padding import pad, unpad

from . import jsontext

BLOCK_SIZE = 16


def _cbc(key: bytes, iv: bytes):
    """pycryptodome's AES-CBC cipher for a 16-byte `key` and `iv`. ``Crypto.Cipher.AES`` is
    imported on a process's first use: loading it is slow (cffi parses pycryptodome's C
    declarations) and most processes (``flask`` commands, workers that serve no
    encryptedData) never need it."""
    from Crypto.Cipher import AES

    return AES.new(key, AES.MODE_CBC, iv)


class OpenDataError(Exception):
    """Base class: encrypted data from the client cannot be trusted."""


class DecryptError(OpenDataError):
    """The ciphertext did not decrypt to a JSON object with the session_key given.

    Usual cause: the session_key rotated (a `wx.login` ran after the data was fetched), or
    encryptedData/iv were mangled on the way (`+` turned into a space, swapped arguments).

    Attributes:
        reason: one of `REASONS`, safe to log (never the key or the data):
            ``session_key`` (the stored key is not base64 of 16 bytes), ``iv`` (not 16
            bytes), ``length`` (the ciphertext is not whole AES blocks), ``padding`` (the
            PKCS#7 padding is wrong: another key, or altered data), ``not_json`` (the
            plaintext is not UTF-8 JSON), ``not_object`` (JSON, but not an object).
    """

    REASONS = ("session_key", "iv", "length", "padding", "not_json", "not_object")

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class WatermarkMismatch(OpenDataError):
    """The decrypted watermark is missing or names another appid."""


class WatermarkExpired(OpenDataError):
    """The decrypted watermark's timestamp is older than the allowed age."""


class SignatureMismatch(OpenDataError):
    """``sha1(rawData + session_key)`` differs from the signature sent."""


def session_key_bytes(session_key: str) -> bytes:
    """Decode a session_key (base64 text, as code2Session returns it) to its 16 raw bytes.

    Raises DecryptError when it is not base64 of exactly 16 bytes.
    """
    try:
        key = base64.b64decode(session_key, validate=True)
    except (binascii.Error, ValueError):
        raise DecryptError("stored session_key is not valid base64", "session_key") from None
    if len(key) != BLOCK_SIZE:
        raise DecryptError("stored session_key is not 16 bytes", "session_key")
    return key


def decrypt(session_key: str, encrypted_data: bytes, iv: bytes) -> dict[str, Any]:
    """Decrypt WeChat encryptedData.

    Args:
        session_key: the user's session_key as base64 text (what code2Session returned).
        encrypted_data: the ciphertext, raw bytes (already base64-decoded).
        iv: the 16-byte initialisation vector, raw bytes (already base64-decoded).

    Returns:
        The decrypted JSON object (a dict), watermark included.

    Raises:
        DecryptError: wrong key, wrong iv length, ciphertext not a whole number of blocks,
            bad PKCS#7 padding (checked strictly), plaintext not UTF-8 JSON, or JSON that is
            not an object.
    """
    key = session_key_bytes(session_key)
    if len(iv) != BLOCK_SIZE:
        raise DecryptError("iv must be 16 bytes", "iv")
    if not encrypted_data or len(encrypted_data) % BLOCK_SIZE:
        raise DecryptError("encryptedData is not a whole number of AES blocks", "length")
    padded = _cbc(key, iv).decrypt(encrypted_data)
    try:
        plaintext = unpad(padded, BLOCK_SIZE, style="pkcs7")
    except ValueError:
        raise DecryptError("encryptedData did not decrypt with the stored session_key",
                           "padding") from None
    try:
        data = jsontext.loads(plaintext)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, lone surrogate
        raise DecryptError("encryptedData did not decrypt with the stored session_key",
                           "not_json") from None
    if not isinstance(data, dict):
        raise DecryptError("decrypted data is not a JSON object", "not_object")
    return data


def encrypt(session_key: str, data: dict[str, Any], iv: bytes | None = None) -> tuple[bytes, bytes]:
    """Encrypt a JSON object the way WeChat does (used by the emulator and tests).

    Args:
        session_key: base64 text of the 16-byte key.
        data: the JSON object to encrypt (include ``watermark`` yourself).
        iv: 16 raw bytes, random when omitted.

    Returns:
        ``(encrypted_data, iv)`` as raw bytes; base64-encode both for the wire.
    """
    key = session_key_bytes(session_key)
    iv = os.urandom(BLOCK_SIZE) if iv is None else iv
    plaintext = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return _cbc(key, iv).encrypt(pad(plaintext, BLOCK_SIZE, style="pkcs7")), iv


def check_watermark(
    data: dict[str, Any], appid: str, max_age: int, now: float | None = None
) -> None:
    """Check the decrypted watermark.

    Args:
        data: decrypted JSON object with ``watermark: {"appid": str, "timestamp": int seconds}``.
        appid: our mini-program's appid; the watermark must name it.
        max_age: seconds the timestamp may differ from `now` (either way); 0 disables the
            age check.
        now: Unix time in seconds; the current time when omitted.

    Raises:
        WatermarkMismatch: no watermark, or it names another appid.
        WatermarkExpired: timestamp missing, not a finite number (NaN, Infinity, or so large
            no float holds it), or further than `max_age` from now.
    """
    watermark = data.get("watermark")
    if not isinstance(watermark, dict) or watermark.get("appid") != appid:
        raise WatermarkMismatch("the data's watermark does not name this mini-program's appid")
    if not max_age:
        return
    timestamp = watermark.get("timestamp")
    if type(timestamp) not in (int, float) or not -2 ** 53 < timestamp < 2 ** 53:
        # (bool is not a number here; NaN fails the comparisons; a huge int or ±Infinity is
        # no time, and an int beyond a float's range would not subtract from one)
        raise WatermarkExpired("the data's watermark has no timestamp")
    now = time.time() if now is None else now
    if not abs(now - timestamp) <= max_age:
        raise WatermarkExpired(f"the data's watermark is more than {max_age} s from now")


def raw_data_signature(raw_data: str, session_key: str) -> str:
    """``sha1_hex(rawData + session_key)``, both as UTF-8 text (WeChat's rawData signature)."""
    return hashlib.sha1((raw_data + session_key).encode("utf-8")).hexdigest()


def check_signature(raw_data: str, signature: str, session_key: str) -> None:
    """Raise SignatureMismatch unless `signature` signs `raw_data` with `session_key`."""
    expected = raw_data_signature(raw_data, session_key)
    given = signature.strip().lower().encode("utf-8")
    if not hmac.compare_digest(expected.encode("ascii"), given):
        raise SignatureMismatch("rawData signature does not match the stored session_key")

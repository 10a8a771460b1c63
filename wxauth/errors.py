"""The one place where every failure becomes an RFC 9457 ``application/problem+json`` answer.

Each problem has a stable machine ``code`` (the table `PROBLEMS`), and each exception the
service can raise maps to one code (`EXCEPTION_CODES`). Flask's error handlers,
flask-smorest's HTTP-exception handler and the JWT checks (`wxauth.web.security`) all end in
`problem_response`. The same table documents the error responses in the OpenAPI document
(`documents_problems`). Of wxauth it imports only the exceptions it maps (infra, wechat).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import marshmallow as ma
from flask import Flask, Response, request
from flask_smorest import Api
from werkzeug.exceptions import HTTPException

import limits.errors
from sqlalchemy import exc as sa_exc

from .infra.media import InvalidImage
from .infra.store import LockTimeout, StoreUnavailable
from .wechat import client as wx
from .wechat import crypto

log = logging.getLogger(__name__)

PROBLEM_TYPE_BASE = "urn:wxauth:problem:"
PROBLEM_MIMETYPE = "application/problem+json"

_RELOGIN = (
    "Call wx.login() again, log in with the new code, then fetch encryptedData again and "
    "resend it."
)


@dataclass(frozen=True)
class ProblemKind:
    status: int
    code: str
    title: str
    advice: str = ""  # appended to the detail: what the client should do


PROBLEMS: dict[str, ProblemKind] = {
    kind.code: kind
    for kind in (
        ProblemKind(400, "invalid_request", "Invalid request"),
        ProblemKind(400, "unknown_app", "Unknown mini-program",
                    "Send the appid of one of the mini-programs this server serves."),
        ProblemKind(404, "not_found", "Not found"),
        ProblemKind(405, "method_not_allowed", "Method not allowed"),
        ProblemKind(413, "payload_too_large", "Request body too large"),
        ProblemKind(500, "internal_error", "Internal server error"),
        ProblemKind(503, "database_unavailable", "Database unavailable",
                    "Retry after Retry-After seconds."),
        ProblemKind(503, "store_unavailable", "Shared store unavailable",
                    "Retry after Retry-After seconds."),
        # answered by the reverse proxy (deploy/nginx/wxauth.conf) while gunicorn is down
        ProblemKind(503, "service_unavailable", "Service unavailable",
                    "Retry after Retry-After seconds."),
        # login code exchange (WeChat errcodes)
        ProblemKind(400, "invalid_code", "Invalid login code",
                    "Codes live 5 minutes: call wx.login() again and send the new code."),
        ProblemKind(400, "code_used", "Login code already used",
                    "Codes are single-use: call wx.login() again and send the new code."),
        ProblemKind(403, "user_blocked", "User blocked by WeChat"),
        ProblemKind(429, "wechat_rate_limited", "WeChat rate limit reached",
                    "Wait for Retry-After seconds before logging in again."),
        ProblemKind(503, "wechat_busy", "WeChat is busy", "Retry after Retry-After seconds."),
        ProblemKind(503, "wechat_unavailable", "WeChat unavailable",
                    "Retry after Retry-After seconds."),
        ProblemKind(502, "wechat_bad_response", "Bad answer from WeChat"),
        ProblemKind(504, "wechat_timeout", "WeChat timed out"),
        ProblemKind(502, "wechat_unreachable", "WeChat unreachable"),
        ProblemKind(422, "content_rejected", "Content rejected",
                    "WeChat's content check refused this text: ask the user for another."),
        ProblemKind(400, "invalid_image", "Not an image",
                    "Upload the chooseAvatar file as multipart field 'file'."),
        # encryptedData
        ProblemKind(400, "decrypt_failed", "Could not decrypt encryptedData", _RELOGIN),
        ProblemKind(400, "watermark_mismatch", "Watermark names another mini-program"),
        ProblemKind(400, "watermark_expired", "Encrypted data too old",
                    "Fetch the data again and send it right away."),
        ProblemKind(400, "signature_mismatch", "rawData signature mismatch", _RELOGIN),
        # login state (JWT)
        ProblemKind(401, "authorization_required", "Authorization required",
                    "Send 'Authorization: Bearer <access_token>' from POST /auth/login."),
        ProblemKind(401, "token_invalid", "Invalid token", "Log in again."),
        ProblemKind(401, "token_expired", "Token expired", "Log in again."),
        ProblemKind(401, "user_not_found", "User not found", "Log in again."),
        ProblemKind(401, "token_revoked", "Token revoked", "Log in again."),
        ProblemKind(429, "rate_limited", "Too many requests",
                    "Wait for Retry-After seconds before trying again."),
    )
}

EXCEPTION_CODES: dict[type[BaseException], str] = {
    wx.InvalidCode: "invalid_code",
    wx.CodeUsed: "code_used",
    wx.UserBlocked: "user_blocked",
    wx.WeChatRateLimited: "wechat_rate_limited",
    wx.WeChatBusy: "wechat_busy",
    wx.WeChatAPIError: "wechat_bad_response",
    wx.WeChatBadResponse: "wechat_bad_response",
    wx.WeChatTimeout: "wechat_timeout",
    wx.WeChatUnreachable: "wechat_unreachable",
    wx.WeChatUnavailable: "wechat_unavailable",
    LockTimeout: "wechat_busy",
    StoreUnavailable: "store_unavailable",
    limits.errors.StorageError: "store_unavailable",
    InvalidImage: "invalid_image",
    crypto.DecryptError: "decrypt_failed",
    crypto.WatermarkMismatch: "watermark_mismatch",
    crypto.WatermarkExpired: "watermark_expired",
    crypto.SignatureMismatch: "signature_mismatch",
}

# Codes every Bearer-protected operation can answer.
AUTH_CODES = ("authorization_required", "token_invalid", "token_expired", "token_revoked",
              "user_not_found")
# Codes of an operation that calls WeChat (the transport and server failures above).
WECHAT_CODES = ("wechat_rate_limited", "wechat_busy", "wechat_unavailable",
                "wechat_bad_response", "wechat_timeout", "wechat_unreachable")
# Codes any operation can answer when a dependency is out (503 with Retry-After).
OUTAGE_CODES = ("database_unavailable", "store_unavailable")
# seconds a client should wait before retrying after a database outage
DATABASE_RETRY_AFTER = 5


class Problem(Exception):
    """Raise anywhere in a request to answer with the problem `code`.

    Args:
        code: a key of `PROBLEMS`.
        detail: human-readable explanation for this occurrence.
        headers: extra response headers (e.g. ``Retry-After``).
        extra: extension members added to the JSON body.
    """

    def __init__(self, code: str, detail: str, *, headers: dict[str, str] | None = None,
                 **extra: Any):
        super().__init__(detail)
        self.kind = PROBLEMS[code]
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def problem_response(code: str, detail: str, *, headers: dict[str, str] | None = None,
                     **extra: Any) -> Response:
    """Build the ``application/problem+json`` response for problem `code`."""
    kind = PROBLEMS[code]
    if kind.advice and kind.advice not in detail:
        detail = f"{detail.rstrip('.')}. {kind.advice}" if detail else kind.advice
    body = {
        "type": PROBLEM_TYPE_BASE + kind.code,
        "title": kind.title,
        "status": kind.status,
        "detail": detail or kind.title,
        "code": kind.code,
        **extra,
    }
    response = Response(json.dumps(body, ensure_ascii=False), status=kind.status,
                        mimetype=PROBLEM_MIMETYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _flatten(messages: Any, prefix: str = "") -> list[str]:
    """Turn marshmallow/webargs messages ``{"json": {"code": ["…"]}}`` into ``code: …``."""
    if isinstance(messages, dict):
        out: list[str] = []
        for key, value in messages.items():
            name = "" if key in ("json", "query", "files", "form") else str(key)
            out += _flatten(value, f"{prefix}.{name}" if prefix and name else prefix or name)
        return out
    if isinstance(messages, (list, tuple)):
        if all(isinstance(m, str) for m in messages):
            return [f"{prefix}: {' '.join(messages)}" if prefix else " ".join(messages)]
        return [line for m in messages for line in _flatten(m, prefix)]
    return [f"{prefix}: {messages}" if prefix else str(messages)]


_HTTP_CODES = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed",
               413: "payload_too_large", 429: "rate_limited"}


def http_exception_response(error: HTTPException) -> Response:
    """Problem response for a Werkzeug/webargs HTTPException."""
    status = error.code or 500
    code = _HTTP_CODES.get(status, "invalid_request" if 400 <= status < 500 else "internal_error")
    data = getattr(error, "data", None) or {}
    messages = data.get("messages")
    extra: dict[str, Any] = {}
    if messages:
        detail = "; ".join(_flatten(messages))
        errors = messages.get("json", messages) if isinstance(messages, dict) else messages
        # always an object: field → messages; "_schema" for the body as a whole
        extra["errors"] = errors if isinstance(errors, dict) else {"_schema": errors}
    elif code == "payload_too_large":
        detail = "The request body is larger than this server accepts."
    elif code == "rate_limited":
        detail = f"Rate limit reached ({error.description})."
    elif code == "internal_error":
        detail = "The server could not handle this request."
    else:
        detail = error.description or PROBLEMS[code].title
    headers = {k: v for k, v in error.get_headers() if k.lower() not in ("content-type",)}
    headers.update(data.get("headers") or {})
    return problem_response(code, detail, headers=headers, **extra)


def exception_response(exc: Exception) -> Response:
    """Problem response for any exception raised while handling a request."""
    if isinstance(exc, Problem):
        return problem_response(exc.kind.code, exc.detail, headers=exc.headers, **exc.extra)
    if isinstance(exc, HTTPException):
        return http_exception_response(exc)
    if is_database_outage(exc):
        log.warning("database unavailable on %s %s: %s", request.method, request.path,
                    _reason(exc))
        return problem_response("database_unavailable", "The database does not answer.",
                                headers={"Retry-After": str(DATABASE_RETRY_AFTER)})
    code = next((EXCEPTION_CODES[c] for c in type(exc).__mro__ if c in EXCEPTION_CODES), None)
    if code is None:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response("internal_error", "The server could not handle this request.")
    headers, extra = {}, {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after:
        headers["Retry-After"] = str(retry_after)
    if isinstance(exc, wx.WeChatAPIError):
        extra["errcode"] = exc.errcode
    if isinstance(exc, wx.WeChatError):
        level = logging.ERROR if PROBLEMS[code].status >= 500 else logging.INFO
        log.log(level, "WeChat call failed on %s: %s", request.path, exc)
    if code == "store_unavailable":
        log.warning("shared store unavailable on %s %s: %s", request.method, request.path,
                    _reason(exc))
        headers["Retry-After"] = str(StoreUnavailable.retry_after)
        return problem_response(code, "The shared store (Redis) does not answer.",
                                headers=headers)
    return problem_response(code, str(exc), headers=headers, **extra)


# Missing tables: the database was dropped or replaced under us (PostgreSQL's SQLSTATE,
# MySQL/MariaDB's error number); SQLite says "no such table" as an OperationalError.
_MISSING_TABLE_SQLSTATES = {"42P01", "3D000"}
_MISSING_TABLE_MYSQL = {1146, 1049}


def is_database_outage(exc: BaseException) -> bool:
    """Whether `exc` means the database is out of reach (refused, silent, restarting, gone,
    its database dropped, the pool exhausted) rather than a fault in a request or in code."""
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError,
                        sa_exc.DisconnectionError, sa_exc.TimeoutError)):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
        if getattr(orig, "sqlstate", None) in _MISSING_TABLE_SQLSTATES:
            return True
        args = getattr(orig, "args", ())
        return bool(args) and args[0] in _MISSING_TABLE_MYSQL
    return False


def _reason(exc: BaseException) -> str:
    """One short line saying what failed: the driver's error class and the first line of
    its message (statements' parameters are never in it: hide_parameters)."""
    orig = getattr(exc, "orig", None) or getattr(exc, "__cause__", None) or exc
    first = (str(orig).strip().splitlines() or [""])[0][:200]
    return f"{type(orig).__name__}: {first}" if first else type(orig).__name__


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details, as every error of this API is answered."""

    type = ma.fields.String(required=True, metadata={"example": PROBLEM_TYPE_BASE + "invalid_code"})
    title = ma.fields.String(required=True)
    status = ma.fields.Integer(required=True)
    detail = ma.fields.String(required=True)
    code = ma.fields.String(required=True, metadata={"description": "stable machine code"})
    errors = ma.fields.Dict(metadata={"description": "field → messages (invalid_request)"})
    errcode = ma.fields.Integer(metadata={"description": "WeChat's errcode, when it gave one"})
    session_key_valid = ma.fields.Boolean(allow_none=True, metadata={
        "description": "decrypt_failed: whether WeChat still holds the stored session_key "
                       "(null: could not ask)"})


class ProblemApi(Api):
    """flask-smorest's Api, answering HTTP errors as problem+json."""

    ERROR_SCHEMA = ProblemSchema
    # No catch-all "default" response: each operation lists the statuses it can answer.
    DEFAULT_ERROR_RESPONSE_NAME = None

    def handle_http_exception(self, error):
        return http_exception_response(error)


def documents_problems(blp, *codes: str):
    """Decorator documenting the problem responses an operation can give, grouped by status
    (the outage codes, which every operation can give, included)."""
    by_status: dict[int, list[str]] = defaultdict(list)
    for code in dict.fromkeys((*codes, *OUTAGE_CODES)):
        by_status[PROBLEMS[code].status].append(code)

    def decorator(func):
        for status, group in sorted(by_status.items()):
            description = "Problem details; `code` is one of: " + ", ".join(
                f"`{c}`" for c in group)
            func = blp.alt_response(status, schema=ProblemSchema, description=description,
                                    content_type=PROBLEM_MIMETYPE)(func)
        return func

    return decorator


def register_errorhandlers(app: Flask) -> None:
    """Route every exception through `exception_response`."""
    app.register_error_handler(Exception, exception_response)
    app.register_error_handler(HTTPException, http_exception_response)

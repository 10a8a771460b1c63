"""The one place where every failure becomes an RFC 9457 ``application/problem+json`` answer.

Each problem has a stable machine ``code`` (the table `PROBLEMS`), and each exception the
service can raise maps to one code (`EXCEPTION_CODES`). Flask's error handlers,
flask-smorest's HTTP-exception handler and the JWT checks (`wxauth.web.security`) all end in
`problem_response`. The same table documents the error responses in the OpenAPI document
(`documents_problems`). Titles, advice and details are marked for translation: the request's
Accept-Language picks English or Simplified Chinese (`wxauth.i18n`). Of wxauth it imports only
the exceptions it maps (infra, wechat) and `wxauth.i18n`.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import marshmallow as ma
from flask import Flask, Response, g, has_request_context, request
from flask_babel import LazyString, gettext
from flask_smorest import Api
from werkzeug.exceptions import HTTPException

import limits.errors
from sqlalchemy import exc as sa_exc

from .i18n import CONTENT_LANGUAGE, DEFAULT_LANGUAGE, _l, current_language
from .infra.media import InvalidImage
from .infra.store import LockTimeout, StoreUnavailable
from .wechat import client as wx
from .wechat import crypto

log = logging.getLogger(__name__)

PROBLEM_TYPE_BASE = "urn:wxauth:problem:"
PROBLEM_MIMETYPE = "application/problem+json"

_RELOGIN = _l(
    "Call wx.login() again, log in with the new code, then fetch encryptedData again and "
    "resend it.")
_RETRY = _l("Retry after Retry-After seconds.")
_LOGIN_AGAIN = _l("Log in again.")


@dataclass(frozen=True)
class ProblemKind:
    """One problem code. `title`, `advice` and `detail` are marked for translation (``_l``):
    Accept-Language chooses their language (`wxauth.i18n`); `code` never changes."""

    status: int
    code: str
    title: str
    advice: str = ""  # appended to the detail: what the client should do
    # what happened, in general: the detail when an occurrence gives none, or gives one that
    # was not marked for translation (a WeChat or decryption message) and the answer is not
    # in English
    detail: str = ""


PROBLEMS: dict[str, ProblemKind] = {
    kind.code: kind
    for kind in (
        ProblemKind(400, "invalid_request", _l("Invalid request"),
                    detail=_l("The request is malformed or has invalid fields.")),
        ProblemKind(400, "unknown_app", _l("Unknown mini-program"),
                    _l("Send the appid of one of the mini-programs this server serves."),
                    detail=_l("The appid names a mini-program this server does not serve.")),
        ProblemKind(403, "forbidden", _l("Forbidden"),
                    _l("Ask an administrator for a role that allows it."),
                    detail=_l("Your role does not allow this action.")),
        ProblemKind(404, "not_found", _l("Not found"),
                    detail=_l("There is nothing at this address.")),
        ProblemKind(405, "method_not_allowed", _l("Method not allowed"),
                    detail=_l("This address does not accept this HTTP method.")),
        ProblemKind(413, "payload_too_large", _l("Request body too large"),
                    detail=_l("The request body is larger than this server accepts.")),
        ProblemKind(500, "internal_error", _l("Internal server error"),
                    detail=_l("The server could not handle this request.")),
        ProblemKind(503, "database_unavailable", _l("Database unavailable"), _RETRY,
                    detail=_l("The database does not answer.")),
        ProblemKind(503, "store_unavailable", _l("Shared store unavailable"), _RETRY,
                    detail=_l("The shared store (Redis) does not answer.")),
        # answered by the reverse proxy (deploy/nginx/wxauth.conf) while gunicorn is down
        ProblemKind(503, "service_unavailable", _l("Service unavailable"), _RETRY,
                    detail=_l("The service is restarting or down.")),
        # login code exchange (WeChat errcodes)
        ProblemKind(400, "invalid_code", _l("Invalid login code"),
                    _l("Codes live 5 minutes: call wx.login() again and send the new code."),
                    detail=_l("WeChat refused the code: it is invalid or expired.")),
        ProblemKind(400, "code_used", _l("Login code already used"),
                    _l("Codes are single-use: call wx.login() again and send the new code."),
                    detail=_l("WeChat says this code was used already.")),
        ProblemKind(403, "user_blocked", _l("User blocked by WeChat"),
                    detail=_l("WeChat refuses this user (a high-risk account).")),
        ProblemKind(429, "wechat_rate_limited", _l("WeChat rate limit reached"),
                    _l("Wait for Retry-After seconds before logging in again."),
                    detail=_l("WeChat refuses more logins of this user for now.")),
        ProblemKind(503, "wechat_busy", _l("WeChat is busy"), _RETRY,
                    detail=_l("WeChat answered that it is busy.")),
        ProblemKind(503, "wechat_unavailable", _l("WeChat unavailable"), _RETRY,
                    detail=_l("Calls to WeChat are paused after repeated failures, or too many "
                              "are in flight.")),
        ProblemKind(502, "wechat_bad_response", _l("Bad answer from WeChat"),
                    detail=_l("WeChat answered with an error or with an answer this server "
                              "cannot use.")),
        ProblemKind(504, "wechat_timeout", _l("WeChat timed out"), _RETRY,
                    detail=_l("WeChat did not answer in time.")),
        ProblemKind(502, "wechat_unreachable", _l("WeChat unreachable"),
                    detail=_l("This server could not connect to WeChat.")),
        ProblemKind(422, "content_rejected", _l("Content rejected"),
                    _l("WeChat's content check refused this text: ask the user for another."),
                    detail=_l("The text did not pass WeChat's content check.")),
        ProblemKind(400, "invalid_image", _l("Not an image"),
                    _l("Upload the chooseAvatar file as multipart field 'file'."),
                    detail=_l("The upload is not a JPEG, PNG or WebP image, or has too many "
                              "pixels.")),
        # encryptedData
        ProblemKind(400, "decrypt_failed", _l("Could not decrypt encryptedData"), _RELOGIN,
                    detail=_l("encryptedData did not decrypt with the stored session_key.")),
        ProblemKind(400, "watermark_mismatch", _l("Watermark names another mini-program"),
                    detail=_l("The encrypted data was made for another appid.")),
        ProblemKind(400, "watermark_expired", _l("Encrypted data too old"),
                    _l("Fetch the data again and send it right away."),
                    detail=_l("The encrypted data's watermark is too old.")),
        ProblemKind(400, "signature_mismatch", _l("rawData signature mismatch"), _RELOGIN,
                    detail=_l("rawData does not match signature.")),
        # login state (JWT)
        ProblemKind(401, "authorization_required", _l("Authorization required"),
                    _l("Send 'Authorization: Bearer <access_token>' from POST /auth/login."),
                    detail=_l("This endpoint needs a login state.")),
        ProblemKind(401, "token_invalid", _l("Invalid token"), _LOGIN_AGAIN,
                    detail=_l("The token is not valid here.")),
        ProblemKind(401, "token_expired", _l("Token expired"), _LOGIN_AGAIN,
                    detail=_l("The token has expired.")),
        ProblemKind(401, "user_not_found", _l("User not found"), _LOGIN_AGAIN,
                    detail=_l("The token's user no longer exists.")),
        ProblemKind(401, "token_revoked", _l("Token revoked"), _LOGIN_AGAIN,
                    detail=_l("The token has been revoked.")),
        ProblemKind(429, "rate_limited", _l("Too many requests"),
                    _l("Wait for Retry-After seconds before trying again."),
                    detail=_l("Rate limit reached.")),
        # GET /metrics (wxauth.web.metrics)
        ProblemKind(401, "metrics_token_required", _l("Metrics token required"),
                    _l("Send 'Authorization: Bearer <METRICS_TOKEN>'."),
                    detail=_l("GET /metrics answers only the metrics token.")),
        # users and sessions (services.users, services.sessions)
        ProblemKind(403, "user_disabled", _l("User disabled"),
                    _l("Ask the app's support: an operator disabled this user."),
                    detail=_l("This user is disabled: logins and tokens are refused.")),
        ProblemKind(404, "session_not_found", _l("Session not found"),
                    _l("GET /auth/sessions lists the sessions that can be ended."),
                    detail=_l("No live session of yours has this id.")),
        # service clients (HTTP Basic client_id:secret; services.clients, web.oauth)
        ProblemKind(401, "invalid_client", _l("Client authentication failed"),
                    _l("Send 'Authorization: Basic <base64(client_id:secret)>' of a client "
                       "that `flask clients add` created with the scope this endpoint needs."),
                    detail=_l("The client is unknown, its secret is wrong, or it lacks the "
                              "scope this endpoint needs.")),
        # the support console (/admin/, web.admin)
        ProblemKind(401, "console_sign_in_required", _l("Console sign-in required"),
                    _l("Sign in at /admin/sign-in with your password and a code from your "
                       "authenticator app."),
                    detail=_l("This page of the support console needs a signed-in operator.")),
        ProblemKind(400, "csrf_invalid", _l("Form expired or forged"),
                    _l("Reload the page and send the form again."),
                    detail=_l("The form's CSRF token is missing, wrong or from another "
                              "session.")),
        # the person's own rights (services.rights)
        ProblemKind(403, "confirmation_mismatch", _l("Confirmation from another user"),
                    _l("Deleting an account needs a fresh wx.login code of the same user."),
                    detail=_l("The confirmation code belongs to another user.")),
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
              "user_not_found", "user_disabled")
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
        detail: human-readable explanation for this occurrence; mark it with
            ``wxauth.i18n._l`` (arguments as ``%(name)s``) so it is translated.
        headers: extra response headers (e.g. ``Retry-After``).
        advice: what the client should do, instead of the code's own advice.
        extra: extension members added to the JSON body.
    """

    def __init__(self, code: str, detail: str, *, headers: dict[str, str] | None = None,
                 advice: str | None = None, **extra: Any):
        super().__init__(detail)
        self.kind = PROBLEMS[code]
        self.detail = detail
        self.headers = headers or {}
        self.advice = advice
        self.extra = extra


def problem_code(exc: BaseException) -> str | None:
    """The problem code `exc` answers (`Problem`, or a mapped exception of
    `EXCEPTION_CODES`), or None when it is not one of those."""
    if isinstance(exc, Problem):
        return exc.kind.code
    return next((EXCEPTION_CODES[c] for c in type(exc).__mro__ if c in EXCEPTION_CODES), None)


def localized_detail(kind: ProblemKind, detail: str | None = None,
                     advice: str | None = None) -> str:
    """The detail of an answer in the request's language: the occurrence's `detail` (the
    code's general detail when there is none, or when it was not marked for translation and
    the answer is not in English), then the advice (`advice`, else the code's)."""
    if not detail or not (isinstance(detail, LazyString)
                          or current_language() == DEFAULT_LANGUAGE):
        detail = kind.detail or kind.title
    text, advice = str(detail), str(kind.advice if advice is None else advice)
    if not advice or advice in text:
        return text
    return gettext("%(detail)s. %(advice)s", detail=text.rstrip(".。"), advice=advice)


def problem_body(code: str, detail: str | None = None, *, advice: str | None = None,
                 **extra: Any) -> dict[str, Any]:
    """The RFC 9457 body of problem `code`: ``type``, ``title``, ``status``, ``detail``
    (`localized_detail`), ``code`` and the `extra` members; texts in the request's language
    (English outside a request)."""
    kind = PROBLEMS[code]
    return {
        "type": PROBLEM_TYPE_BASE + kind.code,
        "title": str(kind.title),
        "status": kind.status,
        "detail": localized_detail(kind, detail, advice),
        "code": kind.code,
        **extra,
    }


def problem_response(code: str, detail: str | None = None, *,
                     headers: dict[str, str] | None = None, advice: str | None = None,
                     **extra: Any) -> Response:
    """Build the ``application/problem+json`` response for problem `code`: `title` and
    `detail` in the request's language (`wxauth.i18n`), ``Content-Language`` saying which,
    ``Vary: Accept-Language``. In a request, `code` is kept as ``g.problem_code`` for the
    access line and the metrics (`wxauth.web.metrics`)."""
    if has_request_context():
        g.problem_code = code
    body = problem_body(code, detail, advice=advice, **extra)
    response = Response(json.dumps(body, ensure_ascii=False), status=body["status"],
                        mimetype=PROBLEM_MIMETYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    response.headers["Content-Language"] = CONTENT_LANGUAGE[current_language()]
    response.vary.add("Accept-Language")
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


def _validation_detail(messages: Any, errors: dict[str, Any]) -> str:
    """invalid_request's detail: marshmallow's messages in English; in another language the
    fields at fault, by name (their messages stay in the ``errors`` member, in English)."""
    if current_language() == DEFAULT_LANGUAGE:
        return "; ".join(_flatten(messages))
    fields = [str(name) for name in errors if name != "_schema"]
    if not fields:
        return ""  # the body as a whole: the code's general detail
    return _l("Invalid fields: %(fields)s. The errors member says what is wrong with each.",
              fields=", ".join(fields))


_HTTP_CODES = {400: "invalid_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
               413: "payload_too_large", 429: "rate_limited"}


def http_exception_response(error: HTTPException) -> Response:
    """Problem response for a Werkzeug/webargs HTTPException."""
    status = error.code or 500
    code = _HTTP_CODES.get(status, "invalid_request" if 400 <= status < 500 else "internal_error")
    data = getattr(error, "data", None) or {}
    messages = data.get("messages")
    extra: dict[str, Any] = {}
    detail: str | None
    if messages:
        errors = messages.get("json", messages) if isinstance(messages, dict) else messages
        # always an object: field → messages; "_schema" for the body as a whole
        extra["errors"] = errors if isinstance(errors, dict) else {"_schema": errors}
        detail = _validation_detail(messages, extra["errors"])
    elif code == "rate_limited":
        detail = _l("Rate limit reached (%(limit)s).", limit=error.description)
    elif code in ("payload_too_large", "internal_error"):
        detail = None  # the code's own detail
    else:
        detail = error.description
    headers = {k: v for k, v in error.get_headers() if k.lower() not in ("content-type",)}
    headers.update(data.get("headers") or {})
    return problem_response(code, detail, headers=headers, **extra)


def exception_response(exc: Exception) -> Response:
    """Problem response for any exception raised while handling a request."""
    if isinstance(exc, HTTPException):
        return http_exception_response(exc)
    problem = problem_for(exc)
    if problem is None:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response("internal_error")
    if problem is not exc:
        _log_failure(exc, problem.kind.code)
    return problem_response(problem.kind.code, problem.detail, headers=problem.headers,
                            advice=problem.advice, **problem.extra)


def problem_for(exc: BaseException) -> Problem | None:
    """The Problem an exception stands for: a Problem itself, a database outage (503
    ``database_unavailable``, Retry-After), an exception of `EXCEPTION_CODES` (with WeChat's
    ``errcode`` and the Retry-After it calls for); None for anything else (a bug)."""
    if isinstance(exc, Problem):
        return exc
    if is_database_outage(exc):  # (no detail: the code's general one, translated)
        return Problem("database_unavailable", "",
                       headers={"Retry-After": str(DATABASE_RETRY_AFTER)})
    code = problem_code(exc)
    if code is None:
        return None
    if code == "store_unavailable":
        return Problem(code, "", headers={"Retry-After": str(StoreUnavailable.retry_after)})
    headers, extra = {}, {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after:
        headers["Retry-After"] = str(retry_after)
    if isinstance(exc, wx.WeChatAPIError):
        extra["errcode"] = exc.errcode
    # the exception's own message (WeChat's errcode and errmsg, what failed to decrypt) is
    # English, not marked for translation: other languages get the code's general detail
    return Problem(code, str(exc), headers=headers, **extra)


def _log_failure(exc: BaseException, code: str) -> None:
    """One log line for a dependency's failure (never its parameters or secrets)."""
    if code == "database_unavailable":
        log.warning("database unavailable on %s %s: %s", request.method, request.path,
                    _reason(exc))
    elif code == "store_unavailable":
        log.warning("shared store unavailable on %s %s: %s", request.method, request.path,
                    _reason(exc))
    elif isinstance(exc, wx.WeChatError):
        # a call the open circuit refused: the breaker logs its state changes instead
        serious = PROBLEMS[code].status >= 500 and not isinstance(exc, wx.CircuitOpen)
        level = logging.ERROR if serious else logging.INFO
        log.log(level, "WeChat call failed on %s: %s", request.path, exc)


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
    code = ma.fields.String(required=True, validate=ma.validate.OneOf(list(PROBLEMS)),
                            metadata={"description": "stable machine code (README, Errors)"})
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


def problem_example(code: str) -> dict[str, Any]:
    """An OpenAPI Example object for problem `code`: its body as `problem_body` writes it
    with the code's general detail, in English."""
    extra: dict[str, Any] = {}
    if code == "invalid_request":
        extra["errors"] = {"code": ["Missing data for required field."]}
    return {"summary": str(PROBLEMS[code].title), "value": problem_body(code, **extra)}


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
                                    content_type=PROBLEM_MIMETYPE,
                                    examples={c: problem_example(c) for c in group})(func)
        return func

    return decorator


def register_errorhandlers(app: Flask) -> None:
    """Route every exception through `exception_response`."""
    app.register_error_handler(Exception, exception_response)
    app.register_error_handler(HTTPException, http_exception_response)

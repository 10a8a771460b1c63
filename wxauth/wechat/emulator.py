"""A WeChat server-API emulator: a small WSGI app (Werkzeug, no Flask) for offline work.

It behaves as WeChat does where this project depends on it:

``GET /sns/jscode2session?appid=&secret=&js_code=&grant_type=authorization_code``
    Answers ``text/plain`` JSON like WeChat: ``{"session_key", "openid", "unionid"?}`` with
    no ``errcode`` on success. Codes are single-use (40163 the second time) and live
    5 minutes (40029 after, and for unknown codes); each exchange gives the user a new
    session_key (WeChat *may* rotate, the emulator always does, the harder case);
    40013 wrong appid, 40125 wrong secret, 45011 after 100 exchanges per user per minute,
    40226 for users minted as blocked.

``POST /cgi-bin/stable_token`` ``{"grant_type", "appid", "secret", "force_refresh"}``
    The same token while it is valid (a new one with ``force_refresh``), 7200 s.
``GET /cgi-bin/token?grant_type=client_credential&appid=&secret=``
    A new token on every fetch; the previous classic token stops working (40001).
``POST /wxa/business/getuserphonenumber?access_token=`` ``{"code"}``
    Single-use phone codes (40029 otherwise, a wx.login code included) → ``phone_info``.
``GET /wxa/checksession?access_token=&openid=&signature=&sig_method=hmac_sha256``
    errcode 0 when ``signature = hex(HMAC-SHA256(session_key text, ""))`` matches the user's
    current session_key, else 87009.
``POST /wxa/msg_sec_check?access_token=`` ``{"version": 2, "openid", "scene", "content"}``
    ``suggest`` by test words: content containing ``risky`` or ``违规`` → risky, ``review``
    → review, else pass.
Any call with an access_token that is unknown, replaced or invalidated answers 40001.

Developer endpoints (not WeChat's), under ``/dev``; JSON bodies, answers JSON:

``POST /dev/code`` ``{"openid"?, "unionid"?, "appid"?, "blocked"?, "errcode"?, "busy"?, "fault"?, "delay"?}``
    Mints a login code for a made-up user (a random openid when none is given) →
    ``{"code", "openid", "appid"}``. Fault injection for that one code: ``errcode`` (answer
    this errcode), ``busy`` (answer -1 that many times first), ``fault`` (``"html"``: an
    HTML error page with HTTP 200, ``"http_500"``: HTTP 500), ``delay`` (seconds to wait
    before answering).
``POST /dev/encrypt`` ``{"openid", "data", "appid"?, "timestamp"?, "watermark_appid"?}``
    Encrypts `data` with the user's current session_key the way WeChat does, adding
    ``watermark`` → ``{"encryptedData", "iv", "rawData", "signature", "userInfo"}``, the
    shape of ``e.detail`` in ``getUserProfile``.
``POST /dev/phone-code`` ``{"openid"?, "appid"?, "phone"?, "country_code"?, "errcode"?, "busy"?, "delay"?}``
    Mints a getPhoneNumber button code for a made-up user (``phone`` default
    ``13800138000``, ``country_code`` default ``"86"``; give a number to test numeric
    ``countryCode``) → ``{"code", "openid", "appid"}``.
``POST /dev/invalidate-tokens`` ``{"appid"?}``
    Every access_token of the app stops working (as if another party refreshed it).
``GET /dev/stats``
    ``{"token_fetches", "stable_token_fetches", "api_calls"}`` counters.
``GET /dev/users/<openid>?appid=``
    ``{"openid", "unionid", "session_key"}`` — the emulated user's current state.
``POST /dev/faults`` ``{"hang"?, "delay"?}``
    Faults of the whole emulator, for every WeChat API above (not the ``/dev`` endpoints),
    until changed again (the same as ``Emulator.set_faults``) → the faults now in force,
    as ``GET`` answers them. ``hang`` (true): every call blocks without answering, as a
    stalled WeChat does, until ``hang`` is switched off (then it answers normally; at most
    HANG_LIMIT seconds, then it answers anyway, so no thread waits forever); ``delay``
    (seconds, 0 = off): wait that long before every answer (on top of a code's own
    ``delay``). A key left out keeps its value.
``GET /dev/faults``
    ``{"hang", "delay", "pending"}``: the faults in force, and how many WeChat API calls
    have arrived and not been answered yet (held by ``hang``, waiting out a delay, working).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from werkzeug.datastructures import Headers
from werkzeug.exceptions import BadRequest, HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.test import EnvironBuilder, run_wsgi_app
from werkzeug.wrappers import Request, Response

from . import crypto, jsontext

DEFAULT_APPID = "wx00000000000000e1"
CODE_TTL = 300  # seconds a login code stays valid
RATE_LIMIT = 100  # code exchanges per user per minute (errcode 45011 beyond)
HANG_LIMIT = 300.0  # seconds at most that a call waits under the "hang" fault
# The endpoints that are WeChat's (the emulator-wide faults apply to them), not /dev ones.
WECHAT_ENDPOINTS = frozenset({"jscode2session", "stable_token", "token", "phone",
                              "checksession", "msg_sec_check"})


@dataclass
class _User:
    openid: str
    unionid: str | None
    session_key: str = field(default_factory=lambda: base64.b64encode(os.urandom(16)).decode())
    blocked: bool = False
    exchanges: deque = field(default_factory=deque)  # monotonic times of recent exchanges


TOKEN_TTL = 7200  # seconds an access_token lives
RISKY_WORDS = ("risky", "违规")
REVIEW_WORDS = ("review",)


@dataclass
class _PhoneCode:
    appid: str
    openid: str
    phone: str
    country_code: Any
    created: float
    errcode: int | None = None
    busy: int = 0
    delay: float = 0.0
    used: bool = False


@dataclass
class _Code:
    appid: str
    openid: str
    created: float
    errcode: int | None = None
    busy: int = 0
    fault: str | None = None
    delay: float = 0.0
    used: bool = False


INVALID_CODE = {"errcode": 40029, "errmsg": "invalid code"}


def _refuse_code(code: _Code | _PhoneCode | None, appid: str,
                 used: dict[str, Any]) -> dict[str, Any] | None:
    """WeChat's answer refusing a login or phone code (call with the lock held), or None
    when the code may be redeemed: unknown or another app's → 40029; injected busy (-1)
    and errcode faults; `used` when already redeemed; 40029 after CODE_TTL."""
    if code is None or code.appid != appid:
        return INVALID_CODE
    if code.busy > 0:
        code.busy -= 1
        return {"errcode": -1, "errmsg": "system error"}
    if code.errcode is not None:
        return {"errcode": code.errcode, "errmsg": "emulated error"}
    if code.used:
        return used
    if time.monotonic() - code.created > CODE_TTL:
        return INVALID_CODE
    return None


class _ServerAPIHandlers:
    """WSGI handlers of the server APIs (access_token, phone, checksession, msgSecCheck)."""

    def _on_stable_token(self, request):
        body = _body(request)
        return _wechat_json(self.stable_token(str(body.get("appid", "")),
                                              str(body.get("secret", "")),
                                              bool(body.get("force_refresh"))))

    def _on_token(self, request):
        if request.args.get("grant_type") != "client_credential":
            return _wechat_json({"errcode": 40002, "errmsg": "invalid grant_type"})
        return _wechat_json(self.classic_token(request.args.get("appid", ""),
                                               request.args.get("secret", "")))

    def _on_phone(self, request):
        body = _body(request)
        code = str(body.get("code", ""))
        with self._lock:
            phone_code = self._phone_codes.get(code)
            delay = phone_code.delay if phone_code else 0.0
        if delay:
            time.sleep(delay)
        return _wechat_json(self.phone_number(request.args.get("access_token", ""), code))

    def _on_checksession(self, request):
        args = request.args
        if args.get("sig_method") != "hmac_sha256":
            return _wechat_json({"errcode": 87009, "errmsg": "invalid sig_method"})
        return _wechat_json(self.check_session(args.get("access_token", ""),
                                               args.get("openid", ""),
                                               args.get("signature", "")))

    def _on_msg_sec_check(self, request):
        return _wechat_json(self.msg_sec_check(request.args.get("access_token", ""),
                                               _body(request)))

    def _on_mint_phone_code(self, request):
        body = _body(request)
        options = {k: body[k] for k in ("appid", "phone", "country_code", "errcode", "busy",
                                        "delay") if k in body}
        try:
            return _json(self.mint_phone_code(body.get("openid"), **options))
        except (ValueError, TypeError) as exc:
            return _json({"error": str(exc)}, status=400)

    def _on_invalidate_tokens(self, request):
        self.invalidate_tokens(_body(request).get("appid"))
        return _json({"ok": True})

    def _on_stats(self, request):
        with self._lock:
            return _json(dict(self.stats))

    def _on_faults(self, request):
        if request.method == "GET":
            return _json(self.faults())
        body = _body(request)
        try:
            return _json(self.set_faults(**{k: body[k] for k in ("hang", "delay") if k in body}))
        except (ValueError, TypeError) as exc:
            return _json({"error": str(exc)}, status=400)


class Emulator(_ServerAPIHandlers):
    """In-memory WeChat state plus the WSGI app serving it.

    Args:
        apps: appid → AppSecret of the mini-programs the emulator accepts; the first is the
            default for minting. A single default app with a random secret when omitted.
    """

    def __init__(self, apps: dict[str, str] | None = None):
        self.apps = dict(apps or {DEFAULT_APPID: secrets.token_hex(16)})
        self.default_appid = next(iter(self.apps))
        self._lock = threading.Lock()
        self._users: dict[tuple[str, str], _User] = {}
        self._codes: dict[str, _Code] = {}
        self._phone_codes: dict[str, _PhoneCode] = {}
        self._tokens: dict[str, tuple[str, float]] = {}  # token → (appid, expires monotonic)
        self._stable: dict[str, str] = {}  # appid → current stable token
        self._classic: dict[str, str] = {}  # appid → current classic token
        self.stats = {"token_fetches": 0, "stable_token_fetches": 0, "api_calls": 0}
        # Emulator-wide faults (set_faults); a Condition of its own, so that calls held by
        # `hang` wait on it without holding or contending for `_lock`.
        self._faults_changed = threading.Condition()
        self._hang = False
        self._delay = 0.0
        self._pending = 0  # WeChat API calls arrived and not answered yet
        self._url_map = Map(
            [
                Rule("/sns/jscode2session", endpoint="jscode2session", methods=["GET"]),
                Rule("/cgi-bin/stable_token", endpoint="stable_token", methods=["POST"]),
                Rule("/cgi-bin/token", endpoint="token", methods=["GET"]),
                Rule("/wxa/business/getuserphonenumber", endpoint="phone", methods=["POST"]),
                Rule("/wxa/checksession", endpoint="checksession", methods=["GET"]),
                Rule("/wxa/msg_sec_check", endpoint="msg_sec_check", methods=["POST"]),
                Rule("/dev/phone-code", endpoint="mint_phone_code", methods=["POST"]),
                Rule("/dev/invalidate-tokens", endpoint="invalidate_tokens", methods=["POST"]),
                Rule("/dev/stats", endpoint="stats", methods=["GET"]),
                Rule("/dev/code", endpoint="mint_code", methods=["POST"]),
                Rule("/dev/encrypt", endpoint="encrypt", methods=["POST"]),
                Rule("/dev/users/<openid>", endpoint="user", methods=["GET"]),
                Rule("/dev/faults", endpoint="faults", methods=["GET", "POST"]),
            ]
        )

    # -- emulator-wide faults ----------------------------------------------------------------

    def set_faults(self, *, hang: bool | None = None,
                   delay: float | None = None) -> dict[str, Any]:
        """Set the faults every WeChat API call meets (see ``POST /dev/faults``); None keeps
        a value. Switching `hang` off releases the calls it holds at once. Returns
        `faults()`."""
        if hang is not None and not isinstance(hang, bool):
            raise TypeError("hang must be true or false")
        if delay is not None:
            if isinstance(delay, bool) or not isinstance(delay, (int, float)):
                raise TypeError("delay must be a number of seconds")
            if not 0 <= delay <= HANG_LIMIT:
                raise ValueError(f"delay must be between 0 and {HANG_LIMIT:g} seconds")
        with self._faults_changed:
            if hang is not None:
                self._hang = hang
            if delay is not None:
                self._delay = float(delay)
            self._faults_changed.notify_all()
        return self.faults()

    def faults(self) -> dict[str, Any]:
        """``{"hang", "delay", "pending"}``: the faults in force, and the WeChat API calls
        arrived and not answered yet."""
        with self._faults_changed:
            return {"hang": self._hang, "delay": self._delay, "pending": self._pending}

    def _answer_wechat(self, handler, request: Request, values: dict[str, Any]) -> Response:
        """Call a WeChat API handler after the emulator-wide faults: wait while `hang` is on
        (HANG_LIMIT at most), then `delay` seconds; counted in `pending` meanwhile."""
        with self._faults_changed:
            self._pending += 1
        try:
            with self._faults_changed:
                if self._hang:
                    self._faults_changed.wait_for(lambda: not self._hang, timeout=HANG_LIMIT)
                delay = self._delay
            if delay:
                time.sleep(delay)
            return handler(request, **values)
        finally:
            with self._faults_changed:
                self._pending -= 1

    # -- state -----------------------------------------------------------------------------

    def _user(self, appid: str, openid: str, unionid: str | None = None) -> _User:
        user = self._users.get((appid, openid))
        if user is None:
            user = self._users[(appid, openid)] = _User(openid=openid, unionid=unionid)
        elif unionid:
            user.unionid = unionid
        return user

    def mint_code(
        self,
        openid: str | None = None,
        *,
        appid: str | None = None,
        unionid: str | None = None,
        blocked: bool | None = None,
        errcode: int | None = None,
        busy: int = 0,
        fault: str | None = None,
        delay: float = 0.0,
    ) -> dict[str, str]:
        """Mint a login code for a made-up user; see the module docstring for the options."""
        appid = appid or self.default_appid
        if appid not in self.apps:
            raise ValueError(f"unknown appid {appid!r}")
        openid = openid or "o" + secrets.token_urlsafe(21)[:27]
        code = secrets.token_urlsafe(24)
        with self._lock:
            user = self._user(appid, openid, unionid)
            if blocked is not None:
                user.blocked = bool(blocked)
            self._codes[code] = _Code(
                appid, openid, time.monotonic(), None if errcode is None else int(errcode),
                int(busy), fault, float(delay),
            )
        return {"code": code, "openid": openid, "appid": appid}

    def exchange(self, appid: str, secret: str, js_code: str, grant_type: str) -> dict[str, Any]:
        """The code2Session logic; returns the JSON object WeChat would answer."""
        if appid not in self.apps:
            return {"errcode": 40013, "errmsg": "invalid appid"}
        if not hmac_equal(self.apps[appid], secret):
            return {"errcode": 40125, "errmsg": "invalid appsecret"}
        if grant_type != "authorization_code":
            return {"errcode": 40002, "errmsg": "invalid grant_type"}
        with self._lock:
            code = self._codes.get(js_code)
            refusal = _refuse_code(code, appid, {"errcode": 40163, "errmsg": "code been used"})
            if refusal:
                return refusal
            user = self._user(appid, code.openid)
            if user.blocked:
                return {"errcode": 40226, "errmsg": "invalid user"}
            now = time.monotonic()
            while user.exchanges and now - user.exchanges[0] > 60:
                user.exchanges.popleft()
            if len(user.exchanges) >= RATE_LIMIT:
                return {"errcode": 45011, "errmsg": "api minute-quota reach limit"}
            user.exchanges.append(now)
            code.used = True
            user.session_key = base64.b64encode(os.urandom(16)).decode()
            answer = {"session_key": user.session_key, "openid": user.openid}
            if user.unionid:
                answer["unionid"] = user.unionid
            return answer

    def encrypt_for(
        self,
        openid: str,
        data: dict[str, Any],
        *,
        appid: str | None = None,
        timestamp: int | None = None,
        watermark_appid: str | None = None,
    ) -> dict[str, Any]:
        """Encrypt `data` for a user as WeChat does; returns the ``e.detail``-shaped dict."""
        appid = appid or self.default_appid
        with self._lock:
            user = self._users.get((appid, openid))
            if user is None:
                raise KeyError(openid)
            session_key = user.session_key
        watermark = {
            "timestamp": int(time.time()) if timestamp is None else timestamp,
            "appid": watermark_appid or appid,
        }
        encrypted, iv = crypto.encrypt(session_key, {**data, "watermark": watermark})
        raw_data = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        return {
            "errMsg": "getUserProfile:ok",
            "encryptedData": base64.b64encode(encrypted).decode(),
            "iv": base64.b64encode(iv).decode(),
            "rawData": raw_data,
            "signature": crypto.raw_data_signature(raw_data, session_key),
            "userInfo": data,
        }

    def user_state(self, openid: str, appid: str | None = None) -> dict[str, Any]:
        """The emulated user's openid, unionid and current session_key (KeyError if unknown)."""
        with self._lock:
            user = self._users[(appid or self.default_appid, openid)]
            return {"openid": user.openid, "unionid": user.unionid, "session_key": user.session_key}

    # -- access_token and server APIs ---------------------------------------------------------

    def _credentials_error(self, appid: str, secret: str) -> dict[str, Any] | None:
        if appid not in self.apps:
            return {"errcode": 40013, "errmsg": "invalid appid"}
        if not hmac_equal(self.apps[appid], secret):
            return {"errcode": 40125, "errmsg": "invalid appsecret"}
        return None

    def _new_token(self, appid: str) -> str:
        token = secrets.token_urlsafe(96)
        self._tokens[token] = (appid, time.monotonic() + TOKEN_TTL)
        return token

    def stable_token(self, appid: str, secret: str, force_refresh: bool = False) -> dict[str, Any]:
        """getStableAccessToken: the current stable token while valid."""
        error = self._credentials_error(appid, secret)
        if error:
            return error
        with self._lock:
            self.stats["stable_token_fetches"] += 1
            current = self._stable.get(appid)
            if force_refresh or current is None or current not in self._tokens:
                if current:
                    self._tokens.pop(current, None)
                current = self._stable[appid] = self._new_token(appid)
            remaining = int(self._tokens[current][1] - time.monotonic())
            return {"access_token": current, "expires_in": remaining}

    def classic_token(self, appid: str, secret: str) -> dict[str, Any]:
        """getAccessToken: a new token each time; the previous classic one stops working."""
        error = self._credentials_error(appid, secret)
        if error:
            return error
        with self._lock:
            self.stats["token_fetches"] += 1
            previous = self._classic.get(appid)
            if previous:
                self._tokens.pop(previous, None)
            token = self._classic[appid] = self._new_token(appid)
            return {"access_token": token, "expires_in": TOKEN_TTL}

    def invalidate_tokens(self, appid: str | None = None) -> None:
        """Every access_token of `appid` (default app) stops working."""
        appid = appid or self.default_appid
        with self._lock:
            for token, (owner, _) in list(self._tokens.items()):
                if owner == appid:
                    del self._tokens[token]

    def _token_app(self, token: str) -> tuple[str | None, dict[str, Any] | None]:
        """(appid, None) for a live token, else (None, the errcode answer)."""
        with self._lock:
            self.stats["api_calls"] += 1
            item = self._tokens.get(token)
            if item is None:
                return None, {"errcode": 40001, "errmsg": "invalid credential, access_token "
                                                        "is invalid or not latest"}
            if item[1] <= time.monotonic():
                return None, {"errcode": 42001, "errmsg": "access_token expired"}
            return item[0], None

    def mint_phone_code(self, openid: str | None = None, *, appid: str | None = None,
                        phone: str = "13800138000", country_code: Any = "86",
                        errcode: int | None = None, busy: int = 0,
                        delay: float = 0.0) -> dict[str, str]:
        """Mint a getPhoneNumber button code (see the module docstring)."""
        appid = appid or self.default_appid
        if appid not in self.apps:
            raise ValueError(f"unknown appid {appid!r}")
        openid = openid or "o" + secrets.token_urlsafe(21)[:27]
        code = secrets.token_hex(32)
        with self._lock:
            self._user(appid, openid)
            self._phone_codes[code] = _PhoneCode(
                appid, openid, str(phone), country_code, time.monotonic(),
                None if errcode is None else int(errcode), int(busy), float(delay))
        return {"code": code, "openid": openid, "appid": appid}

    def phone_number(self, token: str, code: str) -> dict[str, Any]:
        appid, error = self._token_app(token)
        if error:
            return error
        with self._lock:
            phone_code = self._phone_codes.get(code)
            refusal = _refuse_code(phone_code, appid, INVALID_CODE)  # a used one is just invalid
            if refusal:
                return refusal
            phone_code.used = True
            country = phone_code.country_code
            pure = phone_code.phone
            return {"errcode": 0, "errmsg": "ok", "phone_info": {
                "phoneNumber": pure if str(country) == "86" else f"+{country}{pure}",
                "purePhoneNumber": pure, "countryCode": country,
                "watermark": {"timestamp": int(time.time()), "appid": appid}}}

    def check_session(self, token: str, openid: str, signature: str) -> dict[str, Any]:
        appid, error = self._token_app(token)
        if error:
            return error
        with self._lock:
            user = self._users.get((appid, openid))
            key = user.session_key if user else ""
        expected = hmac.new(key.encode(), b"", hashlib.sha256).hexdigest()
        if user and hmac_equal(expected, signature):
            return {"errcode": 0, "errmsg": "ok"}
        return {"errcode": 87009, "errmsg": "invalid signature"}

    def msg_sec_check(self, token: str, body: dict[str, Any]) -> dict[str, Any]:
        appid, error = self._token_app(token)
        if error:
            return error
        content = str(body.get("content", ""))
        if body.get("version") != 2 or not body.get("openid") or not content:
            return {"errcode": 47001, "errmsg": "data format error"}
        if any(word in content for word in RISKY_WORDS):
            suggest, label = "risky", 20001
        elif any(word in content for word in REVIEW_WORDS):
            suggest, label = "review", 21000
        else:
            suggest, label = "pass", 100
        return {"errcode": 0, "errmsg": "ok", "result": {"suggest": suggest, "label": label},
                "detail": [], "trace_id": secrets.token_hex(8)}

    # -- WSGI ------------------------------------------------------------------------------------

    def __call__(self, environ, start_response):
        request = Request(environ)
        try:
            endpoint, values = self._url_map.bind_to_environ(environ).match()
            handler = getattr(self, "_on_" + endpoint)
            if endpoint in WECHAT_ENDPOINTS:
                response = self._answer_wechat(handler, request, values)
            else:
                response = handler(request, **values)
        except HTTPException as exc:
            response = _json({"errcode": 404 if exc.code == 404 else 400, "errmsg": exc.name},
                             status=exc.code or 400)
        return response(environ, start_response)

    def _on_jscode2session(self, request: Request) -> Response:
        args = request.args
        js_code = args.get("js_code", "")
        with self._lock:
            code = self._codes.get(js_code)
            delay, fault = (code.delay, code.fault) if code else (0.0, None)
        if delay:
            time.sleep(delay)
        if fault == "html":
            return Response("<html><body><h1>502 Bad Gateway</h1></body></html>",
                            mimetype="text/html")
        if fault == "http_500":
            return Response("Internal Server Error", status=500, mimetype="text/plain")
        answer = self.exchange(
            args.get("appid", ""), args.get("secret", ""), js_code, args.get("grant_type", "")
        )
        # WeChat answers code2Session as text/plain.
        return Response(json.dumps(answer), mimetype="text/plain")

    def _on_mint_code(self, request: Request) -> Response:
        body = _body(request)
        try:
            minted = self.mint_code(
                body.get("openid"),
                appid=body.get("appid"),
                unionid=body.get("unionid"),
                blocked=body.get("blocked"),
                errcode=body.get("errcode"),
                busy=body.get("busy", 0),
                fault=body.get("fault"),
                delay=body.get("delay", 0.0),
            )
        except (ValueError, TypeError) as exc:
            return _json({"error": str(exc)}, status=400)
        return _json(minted)

    def _on_encrypt(self, request: Request) -> Response:
        body = _body(request)
        data = body.get("data", {})
        if not isinstance(data, dict) or not body.get("openid"):
            return _json({"error": "need openid and a data object"}, status=400)
        try:
            detail = self.encrypt_for(
                body["openid"], data, appid=body.get("appid"),
                timestamp=body.get("timestamp"), watermark_appid=body.get("watermark_appid"),
            )
        except KeyError:
            return _json({"error": "unknown user: mint a code and log in first"}, status=404)
        return _json(detail)

    def _on_user(self, request: Request, openid: str) -> Response:
        try:
            return _json(self.user_state(openid, request.args.get("appid")))
        except KeyError:
            raise NotFound() from None


def _wechat_json(answer: dict[str, Any]) -> Response:
    return Response(json.dumps(answer, ensure_ascii=False), mimetype="application/json")


def hmac_equal(a: str, b: str) -> bool:
    return secrets.compare_digest(a.encode(), b.encode())


def _body(request: Request) -> dict[str, Any]:
    """The JSON body (whatever its Content-Type; {} when it is not JSON) over the query."""
    try:
        data = jsontext.loads(request.get_data(cache=True))
    except UnicodeEncodeError:  # an unpaired surrogate ("\\ud800"): no answer could carry it
        raise BadRequest() from None
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        data = {}
    return {**request.args.to_dict(), **data}


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, ensure_ascii=False), status=status,
                    mimetype="application/json")


@dataclass(frozen=True)
class TransportResponse:
    """What `WSGITransport.request` answers: urllib3's ``status``, ``headers``, ``data``."""

    status: int
    headers: Headers
    data: bytes


class WSGITransport:
    """A `WeChatClient` transport (urllib3's ``request`` signature) that hands each call to
    a WSGI app in-process.

    Used in development so the server reaches its built-in emulator without a socket (a
    single-threaded server calling itself over HTTP would deadlock).
    """

    def __init__(self, app):
        self.app = app

    def request(self, method: str, url: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, **_options) -> TransportResponse:
        parts = urlsplit(url)
        builder = EnvironBuilder(path=parts.path, query_string=parts.query, method=method,
                                 headers=headers or {}, data=body or b"",
                                 base_url=f"{parts.scheme}://{parts.netloc}")
        app_iter, status, response_headers = run_wsgi_app(self.app, builder.get_environ())
        try:
            content = b"".join(app_iter)
        finally:
            getattr(app_iter, "close", lambda: None)()
        return TransportResponse(int(status.split(" ", 1)[0]), response_headers, content)


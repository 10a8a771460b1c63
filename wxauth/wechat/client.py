"""The one module that speaks to WeChat's server API. It knows nothing of Flask.

- urllib3's ``PoolManager`` (connections kept alive; connection failures retried once by its
  ``Retry``), a timeout on every call. urllib3 is requests' own transport, called directly:
  requests' per-call preparation (settings merge, URL re-parsing, cookie jars, hooks) does
  nothing this client uses and showed in every login (README, Performance).
- WeChat's ``errcode`` becomes a typed exception (see the table below).
- Secrets never leave: exception messages are written here, never copied from urllib3
  (whose messages contain the URL and so the AppSecret), the original exception is dropped
  (``from None``), and urllib3's debug log lines are redacted by
  `wxauth.redaction.RedactingFilter`, installed on its loggers below.

API followed: auth.code2Session, ``GET /sns/jscode2session``
(https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/user-login/code2Session.html).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pybreaker
import urllib3
from urllib3.exceptions import HTTPError, MaxRetryError, NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout
from urllib3.util import Timeout

from .. import metrics
from ..redaction import RedactingFilter, redact
from . import jsontext
from .crypto import DecryptError, session_key_bytes

DEFAULT_API_BASE = "https://api.weixin.qq.com"

log = logging.getLogger(__name__)


# --- exceptions ------------------------------------------------------------------------


class WeChatError(Exception):
    """Base class for every failure talking to WeChat. Messages never contain secrets.

    Attributes:
        outcome: how the call ended, as the ``errcode`` label of the WeChat call metric
            (`wxauth.metrics.WECHAT_CALLS`): WeChat's errcode, or a word when it gave none.
    """

    outcome = "error"


class WeChatAPIError(WeChatError):
    """WeChat answered with a non-zero ``errcode``.

    Attributes:
        errcode: WeChat's error code (int).
        errmsg: WeChat's message, secrets redacted (often ends in ``rid: …``).
    """

    def __init__(self, errcode: int, errmsg: str):
        self.errcode = errcode
        self.errmsg = errmsg
        super().__init__(f"WeChat errcode {errcode}: {errmsg}")

    @property
    def outcome(self) -> str:  # type: ignore[override]
        return str(self.errcode)


class WeChatBusy(WeChatAPIError):
    """errcode -1, system busy, still busy after the client's own retries."""

    retry_after = 2  # seconds


class InvalidCode(WeChatAPIError):
    """errcode 40029: the js_code is invalid or expired (codes live 5 minutes)."""


class CodeUsed(WeChatAPIError):
    """errcode 40163: the js_code was already exchanged (codes are single-use)."""


class UserBlocked(WeChatAPIError):
    """errcode 40226: WeChat blocked this high-risk user."""


class WeChatRateLimited(WeChatAPIError):
    """errcode 45011: too many calls for this user (100 per minute)."""

    retry_after = 60  # seconds


class AccessTokenInvalid(WeChatAPIError):
    """errcode 40001 (invalid or not the latest access_token) or 42001 (expired)."""


class SessionKeyStale(WeChatAPIError):
    """errcode 87009 from checksession: the stored session_key is no longer current."""


class WeChatBadResponse(WeChatError):
    """WeChat's answer was not usable: an HTTP error status, not JSON, or fields missing."""

    outcome = "bad_response"


class WeChatTimeout(WeChatError):
    """WeChat did not answer within the configured timeout.

    Attributes:
        retry_after: seconds a client should wait before trying again (3): WeChat's stalls
            last seconds, and a retry at once is one more call held for the whole timeout
            by a WeChat still silent, counting towards the circuit breaker; 3 s later
            WeChat answers again, or the breaker has opened and says how long it stays so
            (503 wechat_unavailable), while a person waiting on a login waits little longer.
    """

    outcome = "timeout"
    retry_after = 3


class WeChatUnreachable(WeChatError):
    """No connection to WeChat could be made (DNS, refused, reset)."""

    outcome = "unreachable"


class WeChatUnavailable(WeChatError):
    """The call was not made: the circuit breaker is open after a run of timeouts and
    connection failures, or every slot for calls to WeChat stayed taken.

    Attributes:
        retry_after: seconds after which trying again makes sense (int ≥ 1).
    """

    outcome = "unavailable"

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class CircuitOpen(WeChatUnavailable):
    """The circuit breaker is open: the call was refused without calling WeChat. Expected
    while WeChat fails, so not worth a log line each: the breaker logs its state changes
    (`_CircuitWatch`) and the metrics count the refusals."""

    def __init__(self, retry_after: int):
        super().__init__("WeChat is failing: calls are paused (circuit open)", retry_after)


class _Refused(WeChatUnreachable):
    """A connection attempt failed (refused, no route): `_call` tries once more."""


ERRCODE_EXCEPTIONS: dict[int, type[WeChatAPIError]] = {
    -1: WeChatBusy,
    40029: InvalidCode,
    40163: CodeUsed,
    40226: UserBlocked,
    45011: WeChatRateLimited,
    40001: AccessTokenInvalid,
    42001: AccessTokenInvalid,
    87009: SessionKeyStale,
}


# --- results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessToken:
    """An access_token (kept out of repr()) and its lifetime in seconds."""

    token: str = field(repr=False)
    expires_in: int


@dataclass(frozen=True)
class PhoneInfo:
    """A user's phone number as WeChat gives it (``countryCode`` normalised to text)."""

    phone_number: str
    pure_phone_number: str
    country_code: str
    watermark: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Code2SessionResult:
    """What code2Session returns. ``session_key`` is base64 text and is kept out of repr()."""

    openid: str
    session_key: str = field(repr=False)
    unionid: str | None = None


# Filters on a logger apply to its own records only, so each urllib3 module that logs URLs.
for _name in ("urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry",
              "urllib3.poolmanager"):
    _logger = logging.getLogger(_name)
    if not any(isinstance(f, RedactingFilter) for f in _logger.filters):
        _logger.addFilter(RedactingFilter())


# --- client ----------------------------------------------------------------------------------


class _CircuitWatch(pybreaker.CircuitBreakerListener):
    """The breaker's state changes → `wxauth.metrics.circuit_state` and one WARNING line
    each (the calls refused meanwhile log no line of their own: `CircuitOpen`)."""

    def state_change(self, cb, old_state, new_state) -> None:
        # pybreaker settles each call with the state it began in: calls in flight when the
        # breaker opened open it again as they fail (restarting the cool-down), concurrent
        # probes close it again. Not a change.
        if old_state is not None and old_state.name == new_state.name:
            return
        metrics.circuit_state(new_state.name)
        if new_state.name == pybreaker.STATE_OPEN:
            why = ("the probe failed" if old_state is not None
                   and old_state.name == pybreaker.STATE_HALF_OPEN
                   else f"{cb.fail_max} timeouts or connection failures in a row")
            log.warning("WeChat circuit breaker opened (%s): calls answer 503 "
                        "wechat_unavailable for %g s", why, cb.reset_timeout)
        elif new_state.name == pybreaker.STATE_HALF_OPEN:
            log.warning("WeChat circuit breaker half-open: the next calls probe WeChat")
        else:
            log.warning("WeChat circuit breaker closed: WeChat answers again")


class Guard:
    """What protects WeChat and us from each other, shared by the clients of one process.

    - A bound on calls in flight (`max_calls`): a call waits for a free slot within its
      deadline, else WeChatUnavailable (retry after 1 s).
    - A circuit breaker (pybreaker): after `failures` timeouts or connection failures in a
      row it opens, and calls fail at once with WeChatUnavailable (retry after the rest of
      `cooldown` seconds); then calls go through again as probes (half-open): a success
      closes it, a failure opens it again. WeChat's errcodes and bad answers do not count:
      WeChat answered.

    Args:
        max_calls: calls to WeChat in flight at once in this process.
        failures: consecutive timeouts/connection failures that open the circuit.
        cooldown: seconds the circuit stays open before a probe.
    """

    def __init__(self, max_calls: int = 256, failures: int = 5, cooldown: float = 30):
        self.max_calls = max_calls
        self.slots = threading.BoundedSemaphore(max_calls)
        self._opened = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=failures, reset_timeout=cooldown, state_storage=self._opened,
            exclude=[lambda exc: not isinstance(exc, (WeChatTimeout, WeChatUnreachable))],
            throw_new_error_on_trip=False, name="wechat", listeners=[_CircuitWatch()])
        metrics.circuit_state(self.breaker.current_state)

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"``."""
        return self.breaker.current_state

    def _cooldown_left(self) -> float:
        """Seconds until the open circuit lets a probe through (0 when not open)."""
        opened_at = self._opened.opened_at
        if self.breaker.current_state != pybreaker.STATE_OPEN or opened_at is None:
            return 0.0
        return self.breaker.reset_timeout - (datetime.now(UTC) - opened_at).total_seconds()

    def cooling_down(self) -> bool:
        """Whether the circuit is open and its cool-down not over."""
        return self._cooldown_left() > 0

    def retry_after(self) -> int:
        """Seconds until the open circuit lets a probe through (at least 1)."""
        return max(1, math.ceil(self._cooldown_left()))


class WeChatClient:
    """Client for one mini-program's WeChat server API.

    Args:
        appid: the mini-program's AppID.
        secret: its AppSecret; used in query strings only, never in messages or repr().
        base_url: API base, ``https://api.weixin.qq.com`` unless an emulator is used.
        timeout: seconds for connecting and for reading one answer.
        deadline: seconds one API call may take in all: waiting for a slot, a second
            connection attempt, errcode -1 retries (default: 2 × `timeout`).
        busy_retries: extra attempts when WeChat answers errcode -1 (system busy).
        busy_backoff: seconds before the first retry; doubles each time.
        http: the transport: an object with urllib3's ``request(method, url, body=, headers=,
            timeout=, redirect=)`` answering ``.status``, ``.headers`` and ``.data`` (bytes),
            such as the in-process emulator's `WSGITransport`; a pooled
            ``urllib3.PoolManager`` is made when omitted.
        proxy: an HTTP(S) proxy URL for calls to WeChat (``WECHAT_PROXY``); environment
            variables such as ``HTTPS_PROXY`` are not read.
        guard: the process's `Guard` (calls in flight, circuit breaker); one of its own
            when omitted.

    The client is thread-safe (and greenlet-safe under gevent's monkey-patching).
    """

    def __init__(
        self,
        appid: str,
        secret: str,
        *,
        base_url: str = DEFAULT_API_BASE,
        timeout: float = 5.0,
        deadline: float | None = None,
        busy_retries: int = 2,
        busy_backoff: float = 0.1,
        http: Any = None,
        proxy: str | None = None,
        guard: Guard | None = None,
    ):
        self.appid = appid
        self._secret = secret
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.deadline = deadline if deadline is not None else 2 * timeout
        self.busy_retries = busy_retries
        self.busy_backoff = busy_backoff
        self.guard = guard or Guard()
        if http is None:
            # No retries inside urllib3: a refused connection is tried once more by `_call`,
            # within the deadline; a read error is never re-sent (codes are single-use). No
            # environment proxies: an egress proxy is given explicitly (WECHAT_PROXY).
            # Kept-alive connections: as many as calls may be in flight.
            pool = dict(maxsize=self.guard.max_calls, retries=False, block=False)
            http = urllib3.ProxyManager(proxy, **pool) if proxy else urllib3.PoolManager(**pool)
        self._http = http

    def __repr__(self) -> str:
        return f"WeChatClient(appid={self.appid!r}, base_url={self.base_url!r})"

    def close(self) -> None:
        """Close pooled connections."""
        clear = getattr(self._http, "clear", None)
        if clear is not None:
            clear()

    # -- API calls --------------------------------------------------------------------------

    def code2session(self, js_code: str) -> Code2SessionResult:
        """Exchange a ``wx.login`` code for the user's openid, session_key and unionid.

        WeChat API: auth.code2Session, ``GET /sns/jscode2session`` (answers ``text/plain``
        JSON, usually without ``errcode`` on success).

        Args:
            js_code: the code from ``wx.login()`` (single-use, valid 5 minutes).

        Returns:
            Code2SessionResult(openid, session_key as base64 text, unionid or None).

        Raises:
            InvalidCode (40029), CodeUsed (40163), UserBlocked (40226),
            WeChatRateLimited (45011), WeChatBusy (-1 after retries), WeChatAPIError (any
            other errcode), WeChatBadResponse, WeChatTimeout, WeChatUnreachable.
        """
        params = {
            "appid": self.appid,
            "secret": self._secret,
            "js_code": js_code,
            "grant_type": "authorization_code",
        }
        data = self._call("GET", "/sns/jscode2session", "code2Session", params=params,
                          secrets=(js_code,))
        openid, session_key = data.get("openid"), data.get("session_key")
        unionid = data.get("unionid") or None
        if not isinstance(openid, str) or not openid or not isinstance(session_key, str):
            raise WeChatBadResponse("code2Session answer lacks openid or session_key")
        if unionid is not None and not isinstance(unionid, str):
            raise WeChatBadResponse("code2Session answer has a non-string unionid")
        try:
            session_key_bytes(session_key)
        except DecryptError:
            raise WeChatBadResponse("code2Session answer has a malformed session_key") from None
        return Code2SessionResult(openid=openid, session_key=session_key, unionid=unionid)

    def get_access_token(self, *, stable: bool = True, force_refresh: bool = False) -> AccessToken:
        """Fetch an access_token for server APIs.

        WeChat APIs: getStableAccessToken ``POST /cgi-bin/stable_token`` (``stable=True``: the
        same token while it is valid, so several fetchers do not invalidate each other) or
        getAccessToken ``GET /cgi-bin/token`` (every fetch replaces the previous token).

        Returns:
            AccessToken(token, expires_in seconds).

        Raises:
            WeChatAPIError (40013 appid, 40125 secret, 45009 quota, 40164 IP not allowed…),
            WeChatBusy, WeChatBadResponse, WeChatTimeout, WeChatUnreachable.
        """
        if stable:
            data = self._call("POST", "/cgi-bin/stable_token", "getStableAccessToken",
                              params={}, json_body={
                "grant_type": "client_credential", "appid": self.appid,
                "secret": self._secret, "force_refresh": force_refresh})
        else:
            data = self._call("GET", "/cgi-bin/token", "getAccessToken", params={
                "grant_type": "client_credential", "appid": self.appid, "secret": self._secret})
        token, expires_in = data.get("access_token"), data.get("expires_in")
        if not isinstance(token, str) or not token or not isinstance(expires_in, int):
            raise WeChatBadResponse("access_token answer lacks access_token or expires_in")
        return AccessToken(token, expires_in)

    def get_phone_number(self, access_token: str, code: str) -> PhoneInfo:
        """Exchange a phone-number button code for the user's number.

        WeChat API: getPhoneNumber, ``POST /wxa/business/getuserphonenumber``. The code is
        ``e.detail.code`` from ``<button open-type="getPhoneNumber">`` (base library ≥ 2.21.2),
        single-use and valid 5 minutes; it is *not* a wx.login code.

        Raises:
            InvalidCode (40029), AccessTokenInvalid (40001/42001), WeChatRateLimited (45011),
            WeChatBusy (-1), WeChatAPIError, WeChatBadResponse, WeChatTimeout, WeChatUnreachable.
        """
        data = self._call("POST", "/wxa/business/getuserphonenumber", "getPhoneNumber",
                          params={"access_token": access_token}, json_body={"code": code},
                          secrets=(access_token, code))
        info = data.get("phone_info")
        if not isinstance(info, dict):
            raise WeChatBadResponse("getuserphonenumber answer lacks phone_info")
        return phone_info_from(info)

    def check_session_key(self, access_token: str, openid: str, session_key: str) -> bool:
        """Whether WeChat still holds `session_key` (base64 text) as the user's current key.

        WeChat API: checkSessionKey, ``GET /wxa/checksession`` with
        ``signature = hex(HMAC-SHA256(key=session_key's base64 text, msg=""))``.

        Returns:
            True when valid; False on errcode 87009.

        Raises:
            AccessTokenInvalid, WeChatBusy, WeChatAPIError, WeChatBadResponse, WeChatTimeout,
            WeChatUnreachable.
        """
        signature = hmac.new(session_key.encode(), b"", hashlib.sha256).hexdigest()
        try:
            self._call("GET", "/wxa/checksession", "checkSessionKey", params={
                "access_token": access_token, "openid": openid, "signature": signature,
                "sig_method": "hmac_sha256"}, secrets=(access_token, signature))
        except SessionKeyStale:
            return False
        return True

    def msg_sec_check(self, access_token: str, openid: str, content: str, scene: int = 1) -> str:
        """Moderate user text. WeChat API: msgSecCheck v2, ``POST /wxa/msg_sec_check``.

        Args:
            scene: 1 profile, 2 comment, 3 forum, 4 social log.

        Returns:
            WeChat's suggestion: ``"pass"``, ``"review"`` or ``"risky"``.
        """
        data = self._call("POST", "/wxa/msg_sec_check", "msgSecCheck",
                          params={"access_token": access_token},
                          json_body={"version": 2, "openid": openid, "scene": scene,
                                     "content": content}, secrets=(access_token,))
        suggest = (data.get("result") or {}).get("suggest")
        if suggest not in ("pass", "review", "risky"):
            raise WeChatBadResponse("msg_sec_check answer lacks result.suggest")
        return suggest

    # -- transport ---------------------------------------------------------------------------

    def _redact(self, text: str, secrets: tuple[str, ...] = ()) -> str:
        return redact(text, (self._secret, *secrets))

    def _call(
        self, method: str, path: str, api: str, *, params: dict[str, Any],
        json_body: dict[str, Any] | None = None, secrets: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """One API call within `deadline`: a slot, the circuit breaker, one more connection
        attempt when the first is refused, the errcode -1 retries; returns the JSON object.
        Counted (`wxauth.metrics.wechat_call`) under WeChat's name for it, `api`, with its
        errcode and duration.

        Raises:
            WeChatUnavailable when no slot frees up in time or the circuit is open; the
            errors of `_call_once` otherwise.
        """
        started = time.perf_counter()
        outcome = "error"
        try:
            data = self._guarded_call(method, path, params, json_body, secrets)
            outcome = "0"
            return data
        except WeChatError as exc:
            outcome = exc.outcome
            raise
        finally:
            metrics.wechat_call(api, outcome, None if outcome == WeChatUnavailable.outcome
                                else time.perf_counter() - started)

    def _guarded_call(self, method: str, path: str, params: dict[str, Any],
                      json_body: dict[str, Any] | None,
                      secrets: tuple[str, ...]) -> dict[str, Any]:
        deadline = time.monotonic() + self.deadline
        guard = self.guard
        if guard.cooling_down():  # fail fast, without waiting for a slot
            raise CircuitOpen(guard.retry_after())
        if not guard.slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise WeChatUnavailable(f"{guard.max_calls} calls to WeChat already in flight", 1)
        try:
            with guard.breaker.calling():  # one call, one success or failure for the breaker
                return self._attempts(method, path, params, json_body, secrets, deadline)
        except pybreaker.CircuitBreakerError:
            raise CircuitOpen(guard.retry_after()) from None
        finally:
            guard.slots.release()

    def _attempts(self, method: str, path: str, params: dict[str, Any],
                  json_body: dict[str, Any] | None, secrets: tuple[str, ...],
                  deadline: float) -> dict[str, Any]:
        """`_call_once` until `deadline`: once more when the connection was refused, and
        `busy_retries` more times after errcode -1 (with backoff)."""
        busy = connect = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WeChatTimeout(f"WeChat did not answer {path} within {self.deadline} s")
            try:
                return self._call_once(method, path, params=params, json_body=json_body,
                                       secrets=secrets, remaining=remaining)
            except _Refused:
                if connect >= 1:
                    raise WeChatUnreachable(f"could not connect to WeChat for {path} "
                                            "(refused)") from None
                connect += 1
            except WeChatBusy:
                if busy >= self.busy_retries:
                    raise
                time.sleep(min(self.busy_backoff * (2**busy),
                               max(0.0, deadline - time.monotonic())))
                busy += 1

    def _call_once(
        self, method: str, path: str, *, params: dict[str, Any],
        json_body: dict[str, Any] | None, secrets: tuple[str, ...], remaining: float
    ) -> dict[str, Any]:
        url = f"{self.base_url}{path}?{urlencode(params)}" if params else self.base_url + path
        body, headers = None, None
        if json_body is not None:
            body = json.dumps(json_body, ensure_ascii=False).encode()
            headers = {"Content-Type": "application/json"}
        try:
            timeout = Timeout(connect=min(self.timeout, remaining), read=self.timeout,
                              total=remaining)
            response = self._http.request(method, url, body=body, headers=headers,
                                          timeout=timeout, redirect=False)
        except (HTTPError, OSError) as exc:  # (urllib3's timeouts and MaxRetryError included)
            reason = exc.reason if isinstance(exc, MaxRetryError) else exc
            # (urllib3's NewConnectionError, a refused connection, subclasses its timeout)
            if (isinstance(reason, (Urllib3Timeout, TimeoutError))
                    and not isinstance(reason, NewConnectionError)):
                raise WeChatTimeout(f"WeChat did not answer {path} within "
                                    f"{min(self.timeout, remaining):.3g} s") from None
            if isinstance(reason, (NewConnectionError, ConnectionRefusedError)):
                raise _Refused() from None
            kind = type(reason).__name__
            raise WeChatUnreachable(f"could not connect to WeChat for {path} ({kind})") from None
        if response.status != 200:
            raise WeChatBadResponse(f"WeChat answered {path} with HTTP {response.status}")
        try:
            data = jsontext.loads(response.data)
        except (ValueError, RecursionError):
            kind = response.headers.get("Content-Type", "no content type")
            raise WeChatBadResponse(f"WeChat answered {path} with non-JSON ({kind})") from None
        if not isinstance(data, dict):
            raise WeChatBadResponse(f"WeChat answered {path} with JSON that is not an object")
        errcode = data.get("errcode", 0)
        if errcode in (0, None):
            return data
        if isinstance(errcode, str) and errcode.lstrip("-").isdigit():
            errcode = int(errcode)
        if not isinstance(errcode, int):
            raise WeChatBadResponse(f"WeChat answered {path} with a non-numeric errcode")
        errmsg = self._redact(str(data.get("errmsg", "")), secrets)[:200]
        exc_class = ERRCODE_EXCEPTIONS.get(errcode, WeChatAPIError)
        raise exc_class(errcode, errmsg)


def phone_info_from(info: dict[str, Any]) -> PhoneInfo:
    """PhoneInfo from WeChat's ``phone_info`` or decrypted phone data; ``countryCode`` may be
    a string or a number. Raises WeChatBadResponse when the numbers are missing or hold control
    characters."""
    phone, pure = info.get("phoneNumber"), info.get("purePhoneNumber")
    country = info.get("countryCode")
    if isinstance(country, bool) or not isinstance(country, (str, int)):
        country = None
    if not phone or country is None or not all(
            jsontext.is_clean_text(text) for text in (phone, pure, str(country))):
        raise WeChatBadResponse("phone data lacks phoneNumber, purePhoneNumber or countryCode, "
                                "or they are not text")
    watermark = info.get("watermark") if isinstance(info.get("watermark"), dict) else {}
    return PhoneInfo(phone[:32], pure[:32], str(country)[:8], watermark)

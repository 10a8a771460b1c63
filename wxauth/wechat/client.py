"""The one module that speaks to WeChat's server API. It knows nothing of Flask.

- A pooled ``requests.Session`` (urllib3 keeps connections alive; connection failures are
  retried once by urllib3's ``Retry``), a timeout on every call.
- WeChat's ``errcode`` becomes a typed exception (see the table below).
- Secrets never leave: exception messages are written here, never copied from ``requests``
  (whose messages contain the URL and so the AppSecret), the original exception is dropped
  (``from None``), and urllib3's debug log lines are redacted by `RedactingFilter`.

API followed: auth.code2Session, ``GET /sns/jscode2session``
(https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/user-login/code2Session.html).
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .crypto import DecryptError, session_key_bytes

DEFAULT_API_BASE = "https://api.weixin.qq.com"

log = logging.getLogger(__name__)


# --- exceptions ------------------------------------------------------------------------


class WeChatError(Exception):
    """Base class for every failure talking to WeChat. Messages never contain secrets."""


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


class WeChatBadResponse(WeChatError):
    """WeChat's answer was not usable: an HTTP error status, not JSON, or fields missing."""


class WeChatTimeout(WeChatError):
    """WeChat did not answer within the configured timeout."""


class WeChatUnreachable(WeChatError):
    """No connection to WeChat could be made (DNS, refused, reset)."""


ERRCODE_EXCEPTIONS: dict[int, type[WeChatAPIError]] = {
    -1: WeChatBusy,
    40029: InvalidCode,
    40163: CodeUsed,
    40226: UserBlocked,
    45011: WeChatRateLimited,
}


# --- results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Code2SessionResult:
    """What code2Session returns. ``session_key`` is base64 text and is kept out of repr()."""

    openid: str
    session_key: str = field(repr=False)
    unionid: str | None = None


# --- redaction -----------------------------------------------------------------------------

_SECRET_PARAMS = re.compile(r"(\b(?:secret|js_code|access_token|code)=)[^&\s\"']+")


def redact_query(text: str) -> str:
    """Replace the values of secret-bearing query parameters in `text` with ``***``."""
    return _SECRET_PARAMS.sub(r"\1***", text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts secret query parameters from a record's message.

    Installed on urllib3's loggers, whose DEBUG and WARNING lines print each request's full
    URL (``GET /sns/jscode2session?appid=…&secret=…``).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_query(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


# Filters on a logger apply to its own records only, so each urllib3 module that logs URLs.
for _name in ("urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry",
              "urllib3.poolmanager"):
    _logger = logging.getLogger(_name)
    if not any(isinstance(f, RedactingFilter) for f in _logger.filters):
        _logger.addFilter(RedactingFilter())


# --- client ----------------------------------------------------------------------------------


class WeChatClient:
    """Client for one mini-program's WeChat server API.

    Args:
        appid: the mini-program's AppID.
        secret: its AppSecret; used in query strings only, never in messages or repr().
        base_url: API base, ``https://api.weixin.qq.com`` unless an emulator is used.
        timeout: seconds for connecting and for reading one answer.
        busy_retries: extra attempts when WeChat answers errcode -1 (system busy).
        busy_backoff: seconds before the first retry; doubles each time.
        session: a ``requests.Session`` to use (tests, in-process emulator); a pooled one
            is made when omitted.
        pool_maxsize: connections kept alive to WeChat per client.

    The client is thread-safe for use from the request threads of one process.
    """

    def __init__(
        self,
        appid: str,
        secret: str,
        *,
        base_url: str = DEFAULT_API_BASE,
        timeout: float = 5.0,
        busy_retries: int = 2,
        busy_backoff: float = 0.1,
        session: requests.Session | None = None,
        pool_maxsize: int = 32,
    ):
        self.appid = appid
        self._secret = secret
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.busy_retries = busy_retries
        self.busy_backoff = busy_backoff
        if session is None:
            session = requests.Session()
            # Retry refused connections once; never re-send after a read error (codes are
            # single-use), and let read timeouts surface as timeouts.
            retry = Retry(total=1, connect=1, read=False, status=0, other=False, redirect=0,
                          backoff_factor=0.05)
            adapter = HTTPAdapter(pool_maxsize=pool_maxsize, max_retries=retry)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        self._session = session

    def __repr__(self) -> str:
        return f"WeChatClient(appid={self.appid!r}, base_url={self.base_url!r})"

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()

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
        data = self._call("GET", "/sns/jscode2session", params=params, secrets=(js_code,))
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

    # -- transport ---------------------------------------------------------------------------

    def _redact(self, text: str, secrets: tuple[str, ...] = ()) -> str:
        for secret in (self._secret, *secrets):
            if secret:
                text = text.replace(secret, "***")
        return redact_query(text)

    def _call(
        self, method: str, path: str, *, params: dict[str, Any], secrets: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """One API call with the errcode -1 retry loop; returns the decoded JSON object."""
        attempt = 0
        while True:
            try:
                return self._call_once(method, path, params=params, secrets=secrets)
            except WeChatBusy:
                if attempt >= self.busy_retries:
                    raise
                time.sleep(self.busy_backoff * (2**attempt))
                attempt += 1

    def _call_once(
        self, method: str, path: str, *, params: dict[str, Any], secrets: tuple[str, ...]
    ) -> dict[str, Any]:
        url = self.base_url + path
        try:
            response = self._session.request(method, url, params=params, timeout=self.timeout)
        except requests.Timeout:
            raise WeChatTimeout(f"WeChat did not answer {path} within {self.timeout} s") from None
        except requests.RequestException as exc:
            reason = type(exc).__name__
            raise WeChatUnreachable(f"could not connect to WeChat for {path} ({reason})") from None
        if response.status_code != 200:
            raise WeChatBadResponse(f"WeChat answered {path} with HTTP {response.status_code}")
        try:
            data = json.loads(response.content)
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

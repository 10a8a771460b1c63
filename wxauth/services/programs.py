"""The mini-programs one deployment serves, each with its WeChat client and access_token.

Which apps are served is configuration (``WECHAT_APPS``, or ``WECHAT_APPID`` and
``WECHAT_SECRET``; see `config.parse_apps`). A `MiniProgram` wraps the app's `WeChatClient`
and `AccessTokenManager`: the server APIs that need an access_token are its methods, so a
caller never handles the token (a refused token is fetched again once, see
`AccessTokenManager.call`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import Problem
from ..extensions import db
from ..i18n import _l
from ..state import state
from ..wechat.access_token import AccessTokenManager, TokenStore
from ..wechat.client import Code2SessionResult, PhoneInfo, WeChatClient


@dataclass
class MiniProgram:
    """One configured mini-program: its AppID, settings, WeChat client and token manager.

    Every method raises the WeChat errors of its call (`wxauth.wechat.client`: WeChatTimeout,
    WeChatUnreachable, WeChatBusy, WeChatBadResponse, WeChatAPIError…); those needing an
    access_token also the store's LockTimeout while another worker fetches one.
    """

    appid: str
    name: str
    content_check: bool
    client: WeChatClient = field(repr=False)
    tokens: AccessTokenManager = field(repr=False)

    @classmethod
    def build(cls, appid: str, settings: dict[str, Any], store: TokenStore,
              **client_options: Any) -> MiniProgram:
        """A MiniProgram from its settings (`config.app_settings`); `client_options` go to
        `WeChatClient` (base_url, timeout, deadline, busy_retries, proxy, http, guard)."""
        client = WeChatClient(appid, settings["secret"], **client_options)
        # waiting for another worker's token fetch is bounded like a call of our own
        tokens = AccessTokenManager(client, store, stable=settings["token_api"] == "stable",
                                    lock_wait=client.deadline)
        return cls(appid, settings["name"], settings["content_check"], client, tokens)

    def code2session(self, js_code: str) -> Code2SessionResult:
        """auth.code2Session for a ``wx.login`` code (see `WeChatClient.code2session`)."""
        _release_database()
        return self.client.code2session(js_code)

    def check_session_key(self, openid: str, session_key: str) -> bool:
        """checkSessionKey: whether WeChat still holds `session_key` (base64 text)."""
        _release_database()
        return self.tokens.call(
            lambda token: self.client.check_session_key(token, openid, session_key))

    def phone_number(self, code: str) -> PhoneInfo:
        """getPhoneNumber for a phone button's ``code``; InvalidCode (40029) for a bad one."""
        _release_database()
        return self.tokens.call(lambda token: self.client.get_phone_number(token, code))

    def access_token(self) -> tuple[str, int]:
        """(WeChat's access_token, whole seconds it has left) from the cache the server
        keeps, for the team's services (`services.clients.wechat_access_token`): fetched only
        when no worker has one, never refreshed by force."""
        _release_database()
        entry = self.tokens.current()
        return entry["token"], max(0, int(entry["expires_at"] - time.time()))

    def msg_sec_check(self, openid: str, content: str, scene: int = 1) -> str:
        """msgSecCheck v2: ``"pass"``, ``"review"`` or ``"risky"``."""
        _release_database()
        return self.tokens.call(
            lambda token: self.client.msg_sec_check(token, openid, content, scene=scene))


def _release_database() -> None:
    """End the request's read-only transaction before waiting on WeChat: its connection goes
    back to the pool (loaded objects stay usable) instead of being held through the call, so
    a slow WeChat cannot drain the pool for requests that never call it."""
    session = db.session()  # (the request's Session behind the scoped proxy)
    if session.in_transaction() and not (session.new or session.dirty or session.deleted):
        session.commit()


def configured() -> dict[str, MiniProgram]:
    """The current app's mini-programs, by appid."""
    return state().programs


def get(appid: str | None) -> MiniProgram:
    """The mini-program `appid`; the only one when `appid` is None and one is configured.

    Raises:
        Problem(unknown_app) for an appid that is not configured; Problem(invalid_request)
        when `appid` is None and several apps are configured.
    """
    apps = configured()
    if appid is None:
        if len(apps) == 1:
            return next(iter(apps.values()))
        raise Problem("invalid_request", _l("This server serves several mini-programs: send "
                                            "the appid (wx.getAccountInfoSync().miniProgram"
                                            ".appId)."),
                      errors={"appid": ["Required when several apps are configured."]})
    try:
        return apps[appid]
    except KeyError:
        raise Problem("unknown_app", _l("appid %(appid)s is not configured on this server.",
                                        appid=appid)) from None

"""The mini-programs one deployment serves.

``WECHAT_APPS`` lists them, as JSON or as the path of a JSON file::

    {"wx1111111111111111": {"secret": "…", "name": "Shop"},
     "wx2222222222222222": {"secret": "…", "name": "Games", "content_check": true,
                            "token_api": "classic"}}

(``"wx…": "secret"`` is short for ``{"secret": "…"}``). Per-app settings: ``name``,
``content_check`` (overrides ``WECHAT_CONTENT_CHECK``), ``token_api`` (overrides
``WECHAT_TOKEN_API``). Without ``WECHAT_APPS`` the ``WECHAT_APPID``/``WECHAT_SECRET`` pair is a
one-app list. Each app has its own WeChatClient and access_token (cached per appid).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import current_app

from config import ConfigError

from .access_token import AccessTokenManager
from .errors import Problem
from .wechat.client import WeChatClient

_APPID = re.compile(r"[A-Za-z0-9_]{1,32}\Z")


@dataclass
class MiniProgram:
    """One configured mini-program: its AppID, settings, WeChat client and token manager."""

    appid: str
    name: str
    content_check: bool
    client: WeChatClient = field(repr=False)
    tokens: AccessTokenManager = field(repr=False)


def parse_apps(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """appid → settings (``secret``, ``name``, ``content_check``, ``token_api``) from the
    configuration; ConfigError naming the variable when malformed. Empty when none is set."""
    raw = cfg.get("WECHAT_APPS")
    if raw:
        if isinstance(raw, str):
            text = raw.strip()
            if not text.startswith(("{", "[")):  # else: a file path
                try:
                    text = Path(text).read_text()
                except OSError as exc:
                    raise ConfigError(f"WECHAT_APPS: cannot read {raw!r} ({exc.strerror})") from None
            try:
                raw = json.loads(text)
            except ValueError:
                raise ConfigError("WECHAT_APPS is not valid JSON") from None
        if not isinstance(raw, dict) or not raw:
            raise ConfigError("WECHAT_APPS must be a JSON object: appid → secret or settings")
        apps = {}
        for appid, value in raw.items():
            settings = {"secret": value} if isinstance(value, str) else value
            if not _APPID.match(str(appid)) or not isinstance(settings, dict):
                raise ConfigError(f"WECHAT_APPS: entry {appid!r} is malformed")
            if not isinstance(settings.get("secret"), str) or not settings["secret"]:
                raise ConfigError(f"WECHAT_APPS: app {appid} has no secret")
            token_api = settings.get("token_api", cfg["WECHAT_TOKEN_API"])
            if token_api not in ("stable", "classic"):
                raise ConfigError(f"WECHAT_APPS: app {appid}: token_api must be stable or classic")
            apps[appid] = {
                "secret": settings["secret"],
                "name": str(settings.get("name") or appid),
                "content_check": bool(settings.get("content_check", cfg["WECHAT_CONTENT_CHECK"])),
                "token_api": token_api,
            }
        return apps
    appid, secret = cfg.get("WECHAT_APPID"), cfg.get("WECHAT_SECRET")
    if appid and not secret:
        raise ConfigError("WECHAT_SECRET is not set (WECHAT_APPID is)")
    if not appid:
        return {}
    return {appid: {"secret": secret, "name": appid, "content_check": cfg["WECHAT_CONTENT_CHECK"],
                    "token_api": cfg["WECHAT_TOKEN_API"]}}


def configured() -> dict[str, MiniProgram]:
    """The current app's mini-programs, by appid."""
    return current_app.extensions["wechat_apps"]


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
        raise Problem("invalid_request", "This server serves several mini-programs: send the "
                      "appid (wx.getAccountInfoSync().miniProgram.appId)",
                      errors={"appid": ["Required when several apps are configured."]})
    try:
        return apps[appid]
    except KeyError:
        raise Problem("unknown_app", f"appid {appid} is not configured on this server") from None

"""Settings: every one read from the environment (and from `.env` when present) and
validated here, in one place.

Every setting is an environment variable of the same name. `wxauth.create_app(config)`
starts from `Config`, applies the `config` mapping on top (so tests and embedding code never
need to touch the environment), then calls `complete`, which validates the result and fills
what the mode allows it to fill.

Which rules apply depends on the mode:
- development (`FLASK_DEBUG=1`, or `TESTING`): missing WeChat credentials switch on the
  built-in WeChat emulator, and a missing `JWT_SECRET_KEY` is replaced by a random key kept
  in the instance folder;
- production (everything else, e.g. `gunicorn wsgi:app`): the app refuses to start without
  `WECHAT_APPID`, `WECHAT_SECRET` and `JWT_SECRET_KEY`.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
import secrets
import sys
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from dotenv import load_dotenv
from limits import parse_many
from sqlalchemy.engine import make_url

_BEFORE_DOTENV = frozenset(os.environ)
load_dotenv()
# the variables `.env` set (it never overrides the real environment)
FROM_DOTENV = frozenset(os.environ) - _BEFORE_DOTENV


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message names the variable."""


def env_str(name: str, default: str | None = None) -> str | None:
    """The variable's value, or `default` when unset or empty."""
    value = os.environ.get(name, "").strip()
    return value or default


def env_number(name: str, default: float, kind: type = float) -> float:
    """The variable parsed as `kind` (int or float); ConfigError when it is not a number >= 0."""
    raw = env_str(name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a {kind.__name__}, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {raw!r}")
    return value


def check_server_mode() -> None:
    """Refuse development mode outside the flask CLI (`make run`, ``flask --app wsgi …``).

    Development mode mounts the WeChat emulator, whose ``/_wechat/dev/code`` logs anyone in
    as anyone, and generates keys: a leftover ``.env`` from ``make run`` must never switch it
    on for gunicorn. ``WXAUTH_ALLOW_DEVELOPMENT=1`` serves it anyway (a demo host).

    Raises:
        ConfigError: FLASK_DEBUG is on and the process is not the flask CLI.
    """
    if os.environ.get("FLASK_RUN_FROM_CLI") == "true" or env_str("WXAUTH_ALLOW_DEVELOPMENT") == "1":
        return
    if (env_str("FLASK_DEBUG") or "0").lower() in ("0", "false", "no"):
        return
    source = "from .env" if "FLASK_DEBUG" in FROM_DOTENV else "in the environment"
    raise ConfigError(
        f"FLASK_DEBUG={env_str('FLASK_DEBUG')} {source}: development mode (the built-in WeChat "
        "emulator, generated keys) is for `make run` only. Unset it (production reads no .env "
        "you did not write: see README, Production), or set WXAUTH_ALLOW_DEVELOPMENT=1 to "
        "serve development mode anyway")


class Config:
    # --- WeChat mini-program credentials and API -------------------------------------
    WECHAT_APPID = env_str("WECHAT_APPID")
    WECHAT_SECRET = env_str("WECHAT_SECRET")
    WECHAT_APPS = env_str("WECHAT_APPS")  # several apps: JSON or a JSON file (parse_apps below)
    WECHAT_API_BASE = env_str("WECHAT_API_BASE", "https://api.weixin.qq.com")
    WECHAT_TIMEOUT = env_number("WECHAT_TIMEOUT", 5.0)  # seconds to connect, and to read an answer
    # seconds one WeChat API call may take in all (a free slot, a second connection attempt,
    # errcode -1 retries); keep it under GUNICORN_TIMEOUT
    WECHAT_DEADLINE = env_number("WECHAT_DEADLINE", 10.0)
    WECHAT_MAX_CALLS = env_number("WECHAT_MAX_CALLS", 256, int)  # in flight per process
    # circuit breaker: this many timeouts/connection failures in a row open it; calls then
    # answer 503 wechat_unavailable at once for WECHAT_BREAKER_COOLDOWN seconds, then a probe
    WECHAT_BREAKER_FAILURES = env_number("WECHAT_BREAKER_FAILURES", 5, int)
    WECHAT_BREAKER_COOLDOWN = env_number("WECHAT_BREAKER_COOLDOWN", 30.0)
    WECHAT_PROXY = env_str("WECHAT_PROXY")  # egress proxy for WeChat calls, e.g. http://proxy:3128
    WECHAT_BUSY_RETRIES = env_number("WECHAT_BUSY_RETRIES", 2, int)  # extra tries on errcode -1
    WECHAT_WATERMARK_MAX_AGE = env_number("WECHAT_WATERMARK_MAX_AGE", 600, int)  # seconds; 0 = off
    WECHAT_TOKEN_API = env_str("WECHAT_TOKEN_API", "stable")  # stable | classic
    WECHAT_CONTENT_CHECK = env_str("WECHAT_CONTENT_CHECK", "0") in ("1", "true", "yes")

    # --- Avatars ---------------------------------------------------------------------------
    AVATAR_MAX_BYTES = env_number("AVATAR_MAX_BYTES", 2 * 1024 * 1024, int)
    AVATAR_MAX_SIDE = env_number("AVATAR_MAX_SIDE", 640, int)  # pixels
    AVATAR_MAX_PIXELS = 25_000_000  # refuse larger images (decompression bombs)
    MEDIA_ROOT = env_str("MEDIA_ROOT")  # default: <instance>/media
    MEDIA_BASE_URL = env_str("MEDIA_BASE_URL")  # default: this server's /media

    # --- Storage ------------------------------------------------------------------------
    # None: a SQLite file `wxauth.db` in the instance folder (see complete()).
    SQLALCHEMY_DATABASE_URI = env_str("DATABASE_URL")
    SQLALCHEMY_ENGINE_OPTIONS = {"hide_parameters": True}  # no session_key in DB error text
    # Pool settings for PostgreSQL/MySQL (ignored for SQLite). Recycle connections before
    # MySQL's wait_timeout (often lowered to 300 s by hosts) closes them; ping on checkout.
    # A gevent worker keeps hundreds of requests in flight, but a request holds a connection
    # only while it reads or writes (never across a WeChat call): 10 + 10 per worker serve
    # them; beyond that a request waits DB_POOL_TIMEOUT seconds, then answers 503.
    DB_POOL_SIZE = env_number("DB_POOL_SIZE", 10, int)
    DB_MAX_OVERFLOW = env_number("DB_MAX_OVERFLOW", 10, int)
    DB_POOL_RECYCLE = env_number("DB_POOL_RECYCLE", 280, int)  # seconds
    DB_POOL_TIMEOUT = env_number("DB_POOL_TIMEOUT", 10, int)  # seconds to wait for a connection
    # seconds to connect (PostgreSQL counts whole seconds, at least 2), and for one statement
    # to answer; a silent database answers 503 database_unavailable after them
    DB_CONNECT_TIMEOUT = env_number("DB_CONNECT_TIMEOUT", 3, int)
    DB_STATEMENT_TIMEOUT = env_number("DB_STATEMENT_TIMEOUT", 5.0)

    # --- Shared state (revocation list, access_token cache, rate-limit counters) -------------
    REDIS_URL = env_str("REDIS_URL")  # unset: in-process store, fine for one process only
    REDIS_PREFIX = env_str("REDIS_PREFIX", "wxauth:")
    REDIS_TIMEOUT = env_number("REDIS_TIMEOUT", 2.0)  # seconds to connect, and per command
    # connections per worker (each of the store and the rate limit); more requests than that
    # wait for one (up to REDIS_TIMEOUT) instead of failing
    REDIS_MAX_CONNECTIONS = env_number("REDIS_MAX_CONNECTIONS", 50, int)

    # --- Secrets at rest -----------------------------------------------------------------
    # Fernet keys, comma-separated, newest first: session_key columns are encrypted with the
    # first and decrypt with any. `flask users reencrypt` moves rows to the newest.
    SESSION_KEY_ENCRYPTION_KEY = env_str("SESSION_KEY_ENCRYPTION_KEY")

    # --- Reverse proxies ---------------------------------------------------------------------
    # Comma-separated addresses/networks of the proxies in front (e.g. "127.0.0.1,10.0.0.0/8").
    # X-Forwarded-For/-Proto/-Host are honoured only from them; unset: never.
    TRUSTED_PROXIES = env_str("TRUSTED_PROXIES")

    # --- Login state (JWT) ---------------------------------------------------------------
    JWT_SECRET_KEY = env_str("JWT_SECRET_KEY")
    JWT_ACCESS_TOKEN_EXPIRES = env_number("JWT_ACCESS_TOKEN_EXPIRES", 604800, int)  # 7 days
    JWT_REFRESH_TOKEN_EXPIRES = env_number("JWT_REFRESH_TOKEN_EXPIRES", 2592000, int)  # 30 days
    JWT_ALGORITHM = "HS256"
    JWT_DECODE_ALGORITHMS = ["HS256"]
    JWT_TOKEN_LOCATION = ["headers"]
    JWT_COOKIE_CSRF_PROTECT = False  # no cookies: mini-programs send a Bearer header

    # --- Abuse limits (wxauth.web.ratelimit; counters in Redis when REDIS_URL is set) ---------
    # Per client address. Mobile carriers put many users behind one address: keep it generous.
    LOGIN_RATE_LIMIT = env_str("LOGIN_RATE_LIMIT", "60 per minute")

    # --- Logs ---------------------------------------------------------------------------------
    LOG_FORMAT = env_str("LOG_FORMAT", "text")  # text | json
    LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()

    # --- HTTP ----------------------------------------------------------------------------
    MAX_CONTENT_LENGTH = env_number("MAX_CONTENT_LENGTH", 64 * 1024, int)  # bytes per request
    JSON_MAX_DEPTH = 32  # nesting levels accepted in a JSON body

    # --- OpenAPI (flask-smorest) ---------------------------------------------------------
    API_TITLE = "wxauth"
    API_VERSION = "1.0.0"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/"
    OPENAPI_JSON_PATH = "openapi.json"
    OPENAPI_SWAGGER_UI_PATH = "/docs"
    OPENAPI_SWAGGER_UI_URL = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/"


# --- validation and completion -----------------------------------------------------------

_APPID = re.compile(r"[A-Za-z0-9_]{1,32}\Z")


JWT_KEY_FILE = "jwt-secret.key"
SESSION_KEY_FILE = "session-key-encryption.key"


def complete(cfg: MutableMapping[str, Any], *, instance_path: str, production: bool) -> None:
    """Validate the settings and fill the gaps the mode allows, in place.

    Production (`production`: neither ``FLASK_DEBUG`` nor ``TESTING``) fails fast with a
    ConfigError naming the missing variable. Development fills the gaps: the built-in WeChat
    emulator, a random JWT key and session_key encryption key kept in `instance_path`, a
    SQLite file there.

    Adds: ``WECHAT_APP_SETTINGS`` (appid → settings, see `parse_apps`), ``WECHAT_EMULATOR``,
    ``TRUSTED_PROXY_NETWORKS``, ``DB_CLIENT_DEADLINE``, ``RATELIMIT_STORAGE_URI``, ``RATELIMIT_KEY_PREFIX`` and the
    engine options in ``SQLALCHEMY_ENGINE_OPTIONS``.

    Raises:
        ConfigError: a setting is missing (production) or malformed.
    """
    _database(cfg, instance_path)

    if not cfg.get("JWT_SECRET_KEY"):
        if production:
            raise ConfigError(
                "JWT_SECRET_KEY is not set: production needs a signing key of 32+ random bytes"
            )
        cfg["JWT_SECRET_KEY"] = _instance_secret(instance_path, JWT_KEY_FILE, lambda: secrets.token_urlsafe(48))
    elif production and len(cfg["JWT_SECRET_KEY"].encode()) < 32:
        raise ConfigError("JWT_SECRET_KEY is shorter than 32 bytes: use 32+ random bytes")

    if not cfg.get("SESSION_KEY_ENCRYPTION_KEY"):
        if production:
            raise ConfigError(
                "SESSION_KEY_ENCRYPTION_KEY is not set: production needs a Fernet key, e.g. "
                "python3 -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'")
        cfg["SESSION_KEY_ENCRYPTION_KEY"] = _instance_secret(
            instance_path, SESSION_KEY_FILE, lambda: Fernet.generate_key().decode())
    try:  # (the cipher itself is built by create_app, from this value)
        keys = [Fernet(k.strip().encode()) for k in cfg["SESSION_KEY_ENCRYPTION_KEY"].split(",")
                if k.strip()]
    except (ValueError, TypeError):
        keys = None
    if not keys:
        raise ConfigError("SESSION_KEY_ENCRYPTION_KEY is malformed: each key must be a Fernet "
                          "key (urlsafe base64 of 32 bytes)")

    if cfg["WECHAT_TOKEN_API"] not in ("stable", "classic"):
        raise ConfigError(f"WECHAT_TOKEN_API must be stable or classic, got {cfg['WECHAT_TOKEN_API']!r}")
    if not cfg.get("MEDIA_ROOT"):
        cfg["MEDIA_ROOT"] = str(Path(instance_path) / "media")

    if cfg["LOG_FORMAT"] not in ("text", "json"):
        raise ConfigError(f"LOG_FORMAT must be text or json, got {cfg['LOG_FORMAT']!r}")
    if cfg["LOG_LEVEL"] not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {cfg['LOG_LEVEL']!r}")

    try:
        parse_many(cfg["LOGIN_RATE_LIMIT"])
    except ValueError:
        raise ConfigError(f"LOGIN_RATE_LIMIT is malformed: {cfg['LOGIN_RATE_LIMIT']!r} "
                          "(e.g. '60 per minute' or '10/second; 1000/day')") from None
    # The login rate limit counts with the rest of the shared state (see wxauth.web.ratelimit).
    cfg.setdefault("RATELIMIT_STORAGE_URI", cfg.get("REDIS_URL") or "memory://")
    cfg.setdefault("RATELIMIT_KEY_PREFIX", (cfg.get("REDIS_PREFIX") or "") + "ratelimit")

    try:
        cfg["TRUSTED_PROXY_NETWORKS"] = parse_networks(cfg.get("TRUSTED_PROXIES"))
    except ValueError as exc:
        raise ConfigError(f"TRUSTED_PROXIES is malformed: {exc}") from None

    cfg["WECHAT_APP_SETTINGS"] = parse_apps(cfg)
    if not cfg["WECHAT_APP_SETTINGS"]:
        if production:
            raise ConfigError(
                "WECHAT_APPID is not set: production needs WECHAT_APPID and WECHAT_SECRET, or "
                "WECHAT_APPS (set FLASK_DEBUG=1 for development with the built-in emulator)"
            )
        cfg["WECHAT_EMULATOR"] = True
    else:
        cfg.setdefault("WECHAT_EMULATOR", False)


def _database(cfg: MutableMapping[str, Any], instance_path: str) -> None:
    """Default SQLite file; pool and charset options per backend."""
    if not cfg.get("SQLALCHEMY_DATABASE_URI"):
        cfg["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + str(Path(instance_path) / "wxauth.db")
    try:
        url = make_url(cfg["SQLALCHEMY_DATABASE_URI"])
    except Exception:
        raise ConfigError("DATABASE_URL is not a valid SQLAlchemy URL") from None
    options = dict(cfg.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    backend = url.get_backend_name()
    connect_args = options["connect_args"] = dict(options.get("connect_args") or {})
    if backend == "sqlite":
        connect_args.setdefault("timeout", 30)
    # PostgreSQL under gevent gets a client-side deadline on every statement (libpq has no
    # read timeout): infra.database then pings pooled connections itself, within it, since
    # SQLAlchemy's pre-ping cannot be bounded.
    cfg["DB_CLIENT_DEADLINE"] = backend == "postgresql" and _gevent_patched()
    if backend != "sqlite":
        options.setdefault("pool_pre_ping", not cfg["DB_CLIENT_DEADLINE"])
        options.setdefault("pool_recycle", cfg["DB_POOL_RECYCLE"])
        options.setdefault("pool_size", cfg["DB_POOL_SIZE"])
        options.setdefault("max_overflow", cfg["DB_MAX_OVERFLOW"])
        options.setdefault("pool_timeout", cfg["DB_POOL_TIMEOUT"])
    statement_ms = max(1, int(cfg["DB_STATEMENT_TIMEOUT"] * 1000))
    if backend == "postgresql":
        connect_args.setdefault("connect_timeout", max(2, int(cfg["DB_CONNECT_TIMEOUT"])))
        # the server ends a statement running longer (a lock wait, a slow plan); a silent
        # server is bounded by infra.database's deadline
        connect_args.setdefault("options", f"-c statement_timeout={statement_ms}")
    elif backend in ("mysql", "mariadb"):
        connect_args.setdefault("connect_timeout", max(1, int(cfg["DB_CONNECT_TIMEOUT"])))
        connect_args.setdefault("read_timeout", max(1, math.ceil(cfg["DB_STATEMENT_TIMEOUT"])))
        connect_args.setdefault("write_timeout", max(1, math.ceil(cfg["DB_STATEMENT_TIMEOUT"])))
    if backend in ("mysql", "mariadb") and "charset" not in url.query:
        # utf8mb4, or emoji nicknames fail with "Incorrect string value"
        url = url.update_query_dict({"charset": "utf8mb4"})
        cfg["SQLALCHEMY_DATABASE_URI"] = url.render_as_string(hide_password=False)
    cfg["SQLALCHEMY_ENGINE_OPTIONS"] = options


def _gevent_patched() -> bool:
    """Whether gevent has patched the standard library (gunicorn's gevent workers)."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("socket")


def parse_networks(value: str | None) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """'127.0.0.1, 10.0.0.0/8' → networks; ValueError when an item is not an address."""
    if not value:
        return ()
    return tuple(ipaddress.ip_network(item.strip(), strict=False)
                 for item in value.split(",") if item.strip())


def _instance_secret(instance_path: str, filename: str, generate: Callable[[], str]) -> str:
    """A random key kept in the instance folder, created (mode 0600) on first use.

    Written to a temporary file and hard-linked into place, so processes starting together
    agree on one key and never read a half-written file.
    """
    path = Path(instance_path) / filename
    if path.exists():
        return path.read_text().strip()
    tmp = path.with_name(f".{filename}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(generate())
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text().strip()


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
            if settings.get("token_api", "stable") not in ("stable", "classic"):
                raise ConfigError(f"WECHAT_APPS: app {appid}: token_api must be stable or classic")
            apps[appid] = app_settings(cfg, appid, **settings)
        return apps
    appid, secret = cfg.get("WECHAT_APPID"), cfg.get("WECHAT_SECRET")
    if appid and not secret:
        raise ConfigError("WECHAT_SECRET is not set (WECHAT_APPID is)")
    if not appid:
        return {}
    return {appid: app_settings(cfg, appid, secret)}


def app_settings(cfg: MutableMapping[str, Any], appid: str, secret: str, name: str | None = None,
                 content_check: bool | None = None, token_api: str | None = None,
                 **_ignored: Any) -> dict[str, Any]:
    """One mini-program's settings, the app-wide ones (``WECHAT_CONTENT_CHECK``,
    ``WECHAT_TOKEN_API``) filling what it does not set itself."""
    return {"secret": secret, "name": str(name or appid),
            "content_check": bool(cfg["WECHAT_CONTENT_CHECK"] if content_check is None
                                  else content_check),
            "token_api": token_api or cfg["WECHAT_TOKEN_API"]}

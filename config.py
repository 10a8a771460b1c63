"""Settings, read from the environment (and from `.env` when present).

Every setting is an environment variable of the same name. `wxauth.create_app(config)`
starts from `Config` and applies the `config` mapping on top, so tests and embedding code
never need to touch the environment.

Which rules apply depends on the mode:
- development (`FLASK_DEBUG=1`, or `TESTING`): missing WeChat credentials switch on the
  built-in WeChat emulator, and a missing `JWT_SECRET_KEY` is replaced by a random key kept
  in the instance folder;
- production (everything else, e.g. `gunicorn wsgi:app`): the app refuses to start without
  `WECHAT_APPID`, `WECHAT_SECRET` and `JWT_SECRET_KEY`.
"""

from __future__ import annotations

import os

from dotenv import load_dotenv

load_dotenv()


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


class Config:
    # --- WeChat mini-program credentials and API -------------------------------------
    WECHAT_APPID = env_str("WECHAT_APPID")
    WECHAT_SECRET = env_str("WECHAT_SECRET")
    WECHAT_APPS = env_str("WECHAT_APPS")  # several apps: JSON or a JSON file (wxauth/apps.py)
    WECHAT_API_BASE = env_str("WECHAT_API_BASE", "https://api.weixin.qq.com")
    WECHAT_TIMEOUT = env_number("WECHAT_TIMEOUT", 5.0)  # seconds, per upstream call
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
    # None: a SQLite file `wxauth.db` in the instance folder (see wxauth.settings).
    SQLALCHEMY_DATABASE_URI = env_str("DATABASE_URL")
    SQLALCHEMY_ENGINE_OPTIONS = {"hide_parameters": True}  # no session_key in DB error text
    # Pool settings for PostgreSQL/MySQL (ignored for SQLite). Recycle connections before
    # MySQL's wait_timeout (often lowered to 300 s by hosts) closes them; ping on checkout.
    DB_POOL_SIZE = env_number("DB_POOL_SIZE", 5, int)
    DB_MAX_OVERFLOW = env_number("DB_MAX_OVERFLOW", 10, int)
    DB_POOL_RECYCLE = env_number("DB_POOL_RECYCLE", 280, int)  # seconds
    DB_POOL_TIMEOUT = env_number("DB_POOL_TIMEOUT", 10, int)  # seconds to wait for a connection

    # --- Shared state (revocation list, access_token cache, rate-limit counters) -------------
    REDIS_URL = env_str("REDIS_URL")  # unset: in-process store, fine for one process only
    REDIS_PREFIX = env_str("REDIS_PREFIX", "wxauth:")

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

    # --- Abuse limits (wxauth.ratelimit; counters in Redis when REDIS_URL is set) -------------
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

"""Settings: every one read from the environment (and from `.env` when present) and
validated here, in one place.

Every setting is an environment variable of the same name. `wxauth.create_app(config)`
starts from `Config`, applies the `config` mapping on top (so tests and embedding code never
need to touch the environment), then calls `complete`, which validates the result and fills
what the mode allows it to fill. Reading never fails (`env_number` keeps a malformed value's
text); `complete` reports every problem at once, one line each (`ConfigError.problems`).

Which rules apply depends on the mode:
- development (`FLASK_DEBUG=1`, or `TESTING`): missing WeChat credentials switch on the
  built-in WeChat emulator, and missing keys (session_key encryption, erasure, and
  `JWT_SECRET_KEY` with `JWT_ALGORITHM=HS256`) are replaced by random ones kept in the
  instance folder;
- production (everything else, e.g. `gunicorn wsgi:app`): the app refuses to start without
  `WECHAT_APPID` and `WECHAT_SECRET` (or `WECHAT_APPS`), `SESSION_KEY_ENCRYPTION_KEY`,
  `ERASURE_KEY`, `JWT_SECRET_KEY` with `JWT_ALGORITHM=HS256`, and `SECRET_KEY` while the
  support console (`ADMIN_CONSOLE`) is on.
Both modes generate the first token-signing key (ES256 by default) in the database when
there is none (`wxauth.services.keys`).
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import sys
from collections.abc import Callable, Iterable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from dotenv import load_dotenv
from limits import parse_many
from sqlalchemy.engine import URL, make_url

from serving import parse_networks  # (shared with gunicorn.conf.py)

_BEFORE_DOTENV = frozenset(os.environ)
load_dotenv()
# the variables `.env` set (it never overrides the real environment)
FROM_DOTENV = frozenset(os.environ) - _BEFORE_DOTENV


class ConfigError(RuntimeError):
    """Settings are missing or malformed: one line per problem in `problems` (the message
    joins them), each naming its variable and what to write instead."""

    def __init__(self, problems: str | Iterable[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


# variable → (int or float, default): every setting read by `env_number`, checked by
# `complete` in whatever mapping it ends up (the environment's text or an override)
NUMBERS: dict[str, tuple[type, float]] = {}


def env_str(name: str, default: str | None = None) -> str | None:
    """The variable's value, or `default` when unset or empty."""
    value = os.environ.get(name, "").strip()
    return value or default


def env_number(name: str, default: float, kind: type = float) -> float | str:
    """The variable parsed as `kind` (int or float), or `default` when unset.

    Never raises: a malformed value is kept as its text, and `complete` reports it with
    every other problem (the setting's name must be the variable's name).
    """
    NUMBERS[name] = (kind, default)
    raw = env_str(name)
    if raw is None:
        return default
    try:
        return _number(name, raw, kind)
    except ConfigError:
        return raw


def _number(name: str, value: Any, kind: type) -> float:
    """`value` (a number, or its text) as a finite `kind` >= 0; ConfigError saying what to
    write otherwise."""
    kind_name = "a whole number" if kind is int else "a number"
    default = NUMBERS.get(name, (kind, 1))[1]
    example = int(default) if float(default).is_integer() else default
    if isinstance(value, str):
        try:
            value = kind(value.strip())
        except ValueError:
            raise ConfigError(f"{name}={value!r} is not {kind_name}: write a plain number, no "
                              f"unit, e.g. {name}={example}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            kind is int and not isinstance(value, int)):
        raise ConfigError(f"{name}={value!r} is not {kind_name}: e.g. {name}={example}")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name}={value!r} must be {kind_name} >= 0, e.g. {name}={example}")
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
    # HMAC key of the markers an account deletion leaves (no openid or unionid in clear), so a
    # person who comes back is not "new" again (README, Account deletion and export). 32+
    # random bytes; never rotate it: with another key, everyone who deleted counts as new.
    ERASURE_KEY = env_str("ERASURE_KEY")

    # --- Reverse proxies ---------------------------------------------------------------------
    # Comma-separated addresses/networks of the proxies in front (e.g. "127.0.0.1,10.0.0.0/8").
    # X-Forwarded-For/-Proto/-Host are honoured only from them; unset: never.
    TRUSTED_PROXIES = env_str("TRUSTED_PROXIES")

    # --- Login state (JWT) ---------------------------------------------------------------
    # ES256 (default), RS256 or EdDSA: tokens signed with keys kept in the database (their
    # private part encrypted with SESSION_KEY_ENCRYPTION_KEY), published at
    # /.well-known/jwks.json for other services (wxauth.services.keys, `flask keys …`);
    # HS256: signed with JWT_SECRET_KEY, nothing published (the behaviour before ES256)
    JWT_ALGORITHM = env_str("JWT_ALGORITHM", "ES256")
    # HS256's key; with another algorithm, optional: while set, HS256 tokens issued before
    # the move keep verifying until they expire (then unset it)
    JWT_SECRET_KEY = env_str("JWT_SECRET_KEY")
    JWT_ACCESS_TOKEN_EXPIRES = env_number("JWT_ACCESS_TOKEN_EXPIRES", 604800, int)  # 7 days
    JWT_REFRESH_TOKEN_EXPIRES = env_number("JWT_REFRESH_TOKEN_EXPIRES", 2592000, int)  # 30 days
    # the tokens' `iss` and the discovery document's `issuer`; unset: API_BASE_URL, else the
    # URL root the request came to (e.g. http://127.0.0.1:5000)
    JWT_ISSUER = env_str("JWT_ISSUER")
    # the tokens' `aud` (a service that verifies them may require it); unset: no `aud`
    JWT_AUDIENCE = env_str("JWT_AUDIENCE")
    # seconds between two reads of the signing keys per process: a `flask keys rotate` on any
    # host reaches every instance within this time
    SIGNING_KEYS_REFRESH = env_number("SIGNING_KEYS_REFRESH", 30.0)
    JWT_TOKEN_LOCATION = ["headers"]
    JWT_COOKIE_CSRF_PROTECT = False  # no cookies: mini-programs send a Bearer header

    # --- Abuse limits (wxauth.infra.ratelimit; counters in Redis when REDIS_URL is set) ---------
    # Per client address. Mobile carriers put many users behind one address: keep it generous.
    LOGIN_RATE_LIMIT = env_str("LOGIN_RATE_LIMIT", "60 per minute")
    # Failed service-client authentications (/oauth/…: wrong secret, unknown client, missing
    # scope) per client address; once used up, that address is refused (429) until the
    # window ends. Successful calls are not counted.
    CLIENT_AUTH_RATE_LIMIT = env_str("CLIENT_AUTH_RATE_LIMIT", "10 per minute")

    # --- Sessions and the login log (wxauth.services.sessions, wxauth.services.login_log) -----
    # Live sessions (logins, one per device) a user may hold; a login beyond it ends the one
    # created first. 0: no limit; 1: one device at a time.
    MAX_SESSIONS_PER_USER = env_number("MAX_SESSIONS_PER_USER", 0, int)
    # Days the login log (login_events) keeps a row; `flask logs prune` deletes older rows.
    LOGIN_LOG_RETENTION_DAYS = env_number("LOGIN_LOG_RETENTION_DAYS", 180, int)

    # --- Logs ---------------------------------------------------------------------------------
    LOG_FORMAT = env_str("LOG_FORMAT", "text")  # text | json
    LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()

    # --- Metrics (GET /metrics, Prometheus text format; wxauth.web.metrics) ----------------
    # the Bearer token a scraper sends (16+ characters); unset: /metrics answers 404
    METRICS_TOKEN = env_str("METRICS_TOKEN")

    # --- HTTP ----------------------------------------------------------------------------
    MAX_CONTENT_LENGTH = env_number("MAX_CONTENT_LENGTH", 64 * 1024, int)  # bytes per request
    JSON_MAX_DEPTH = 32  # nesting levels accepted in a JSON body

    # --- API document (OpenAPI by flask-smorest; served by wxauth.web.docs) ----------------
    # 1: serve GET /openapi.json and the Swagger UI at /docs (its files from the
    # flask-swagger-ui package: no CDN); 0: neither (404)
    API_DOCS = env_str("API_DOCS", "1")
    # the URL clients call, the document's `servers` entry (e.g. https://api.example.com);
    # unset: the URL root /openapi.json was requested at
    API_BASE_URL = env_str("API_BASE_URL")
    API_TITLE = "wxauth"
    API_VERSION = "1.0.0"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = None  # flask-smorest's own document routes: off (wxauth.web.docs)

    # --- Support console (/admin/, wxauth.web.admin; README, Support console) ----------------
    # 1 (default): serve the console; 0: no /admin/ route at all
    ADMIN_CONSOLE = env_str("ADMIN_CONSOLE", "1")
    # signs the console's session cookie (Flask's own key); required in production while the
    # console is on; development keeps a random one in the instance folder
    SECRET_KEY = env_str("SECRET_KEY")
    # failed console sign-ins per client address (any operator name); once used up, that
    # address is refused (429) until the window ends
    ADMIN_SIGNIN_RATE_LIMIT = env_str("ADMIN_SIGNIN_RATE_LIMIT", "20 per 15 minutes")
    # Days the audit trail (audit_events) keeps a row; `flask logs prune` deletes older rows.
    AUDIT_RETENTION_DAYS = env_number("AUDIT_RETENTION_DAYS", 365, int)
    ADMIN_IDLE_TIMEOUT = 30 * 60  # seconds without a request before the console signs out
    ADMIN_ABSOLUTE_TIMEOUT = 12 * 3600  # seconds after sign-in, whatever happens
    SESSION_COOKIE_NAME = "wxauth_admin"
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Strict"
    SESSION_COOKIE_PATH = "/admin"
    WTF_CSRF_TIME_LIMIT = None  # the token lives as long as the console session
    WTF_CSRF_CHECK_DEFAULT = False  # only the console's views are checked (web.admin)


# --- validation and completion -----------------------------------------------------------

# A mini-program's AppID (小程序ID) as WeChat writes it: "wx" and 16 lowercase hex digits.
APPID_SHAPE = re.compile(r"wx[0-9a-f]{16}\Z")
APPID_EXAMPLE = "wx4f4bc4dec97d474b"  # WeChat's own sample appid

# DATABASE_URL spellings → the drivers requirements.txt installs (psycopg 3, PyMySQL: both
# cooperate with gevent's workers, unlike psycopg2 and mysqlclient)
DRIVERS = {"postgres": "postgresql+psycopg", "postgresql": "postgresql+psycopg",
           "mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql", "sqlite": "sqlite"}
_DATABASE_EXAMPLES = ("postgresql://user:password@host/wxauth, "
                      "mysql://user:password@host/wxauth or sqlite:////absolute/path/wxauth.db")
_REDIS_SCHEMES = ("redis", "rediss", "unix")

JWT_KEY_FILE = "jwt-secret.key"
JWT_ALGORITHMS = ("ES256", "RS256", "EdDSA", "HS256")
SESSION_KEY_FILE = "session-key-encryption.key"
ERASURE_KEY_FILE = "erasure.key"
SECRET_KEY_FILE = "flask-secret.key"


def complete(cfg: MutableMapping[str, Any], *, instance_path: str, production: bool) -> None:
    """Validate the settings and fill the gaps the mode allows, in place.

    Every problem is found before anything fails: production (`production`: neither
    ``FLASK_DEBUG`` nor ``TESTING``) refuses missing settings, both modes malformed ones, all
    of them in one ConfigError. Development fills the gaps: the built-in WeChat emulator, a
    random JWT key, session_key encryption key and erasure key kept in `instance_path`, a
    SQLite file there.

    Adds: ``WECHAT_APP_SETTINGS`` (appid → settings, see `parse_apps`), ``WECHAT_EMULATOR``,
    ``TRUSTED_PROXY_NETWORKS``, ``DB_CLIENT_DEADLINE``, ``RATELIMIT_STORAGE_URI``,
    ``RATELIMIT_KEY_PREFIX`` and the engine options in ``SQLALCHEMY_ENGINE_OPTIONS``; rewrites
    ``SQLALCHEMY_DATABASE_URI`` to its driver (see `database_url`) and number settings given
    as text to numbers; turns ``API_DOCS`` into a bool.

    Raises:
        ConfigError: one line per missing (production) or malformed setting, each naming the
            variable and what to write.
    """
    problems: list[str] = []

    def check(step: Callable[..., Any], *args: Any) -> Any:
        try:
            return step(*args)
        except ConfigError as exc:
            problems.extend(exc.problems)
            return None

    for name, (kind, default) in NUMBERS.items():
        if name in cfg:
            value = check(_number, name, cfg[name], kind)
            cfg[name] = default if value is None else value  # the default lets the rest run

    apps = check(parse_apps, cfg)
    cfg["WECHAT_APP_SETTINGS"] = apps or {}
    if apps == {}:
        if production:
            problems.append(
                "WECHAT_APPID is not set: production needs WECHAT_APPID and WECHAT_SECRET, or "
                "WECHAT_APPS (set FLASK_DEBUG=1 for development with the built-in emulator)")
        cfg["WECHAT_EMULATOR"] = True
    else:
        cfg.setdefault("WECHAT_EMULATOR", False)
    for name, allowed in (("WECHAT_TOKEN_API", ("stable", "classic")),
                          ("LOG_FORMAT", ("text", "json")),
                          ("LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))):
        if cfg[name] not in allowed:
            problems.append(f"{name}={cfg[name]!r} is not a choice: write one of "
                            f"{', '.join(allowed)}")

    check(_database, cfg, instance_path)
    check(_redis, cfg)
    check(_jwt_key, cfg, instance_path, production)
    check(_session_keys, cfg, instance_path, production)
    check(_erasure_key, cfg, instance_path, production)
    check(_admin_console, cfg, instance_path, production)
    if not cfg.get("MEDIA_ROOT"):
        cfg["MEDIA_ROOT"] = str(Path(instance_path) / "media")

    check(_api_docs, cfg)
    token = cfg.get("METRICS_TOKEN")
    if token is not None and (not isinstance(token, str) or len(token.strip()) < 16):
        problems.append("METRICS_TOKEN is shorter than 16 characters: use a long random token, "
                        "e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))'")

    for name in ("LOGIN_RATE_LIMIT", "CLIENT_AUTH_RATE_LIMIT", "ADMIN_SIGNIN_RATE_LIMIT"):
        try:
            parse_many(cfg[name])
        except (ValueError, TypeError):
            problems.append(f"{name}={cfg[name]!r} is malformed: write e.g. "
                            f"{name}='60 per minute' or '10/second; 1000/day'")
    cfg.setdefault("RATELIMIT_KEY_PREFIX", (cfg.get("REDIS_PREFIX") or "") + "ratelimit")

    try:
        cfg["TRUSTED_PROXY_NETWORKS"] = parse_networks(cfg.get("TRUSTED_PROXIES"))
    except ValueError as exc:
        problems.append(f"TRUSTED_PROXIES is malformed: {exc}: write addresses or networks "
                        "separated by commas, e.g. TRUSTED_PROXIES=127.0.0.1,10.0.0.0/8")
        cfg["TRUSTED_PROXY_NETWORKS"] = ()

    if problems:
        raise ConfigError(problems)


def _jwt_key(cfg: MutableMapping[str, Any], instance_path: str, production: bool) -> None:
    """The signing algorithm and, for HS256 (or tokens issued with it before), the secret;
    fills ``JWT_DECODE_ALGORITHMS`` (HS256 among them while ``JWT_SECRET_KEY`` is set)."""
    if cfg["JWT_ALGORITHM"] not in JWT_ALGORITHMS:
        raise ConfigError(f"JWT_ALGORITHM={cfg['JWT_ALGORITHM']!r} is not a choice: write one "
                          f"of {', '.join(JWT_ALGORITHMS)} (ES256 by default)")
    asymmetric = cfg["JWT_ALGORITHM"] != "HS256"
    if asymmetric and not cfg.get("JWT_SECRET_KEY") and not production:
        # development: a key file an earlier version made still verifies its tokens
        path = Path(instance_path) / JWT_KEY_FILE
        if path.exists():
            cfg["JWT_SECRET_KEY"] = path.read_text().strip()
    cfg["JWT_DECODE_ALGORITHMS"] = [name for name in JWT_ALGORITHMS if name != "HS256"] + (
        ["HS256"] if cfg.get("JWT_SECRET_KEY") or not asymmetric else [])
    if asymmetric and not cfg.get("JWT_SECRET_KEY"):
        return
    if not cfg.get("JWT_SECRET_KEY"):
        if production:
            raise ConfigError(
                "JWT_SECRET_KEY is not set: JWT_ALGORITHM=HS256 needs a signing key of 32+ "
                "random bytes, "
                "e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(48))'")
        cfg["JWT_SECRET_KEY"] = _instance_secret(instance_path, JWT_KEY_FILE,
                                                 lambda: secrets.token_urlsafe(48))
    elif production and len(cfg["JWT_SECRET_KEY"].encode()) < 32:
        raise ConfigError("JWT_SECRET_KEY is shorter than 32 bytes: use 32+ random bytes, e.g. "
                          "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'")


def _admin_console(cfg: MutableMapping[str, Any], instance_path: str,
                   production: bool) -> None:
    """``ADMIN_CONSOLE`` to a bool; while it is on, Flask's ``SECRET_KEY`` (the console's
    session cookie) is required in production, kept in the instance folder in development;
    the cookie is ``Secure`` in production."""
    value = cfg.get("ADMIN_CONSOLE")
    text = str(value).strip().lower()
    if isinstance(value, bool):
        cfg["ADMIN_CONSOLE"] = value
    elif text in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        cfg["ADMIN_CONSOLE"] = text in ("1", "true", "yes", "on")
    else:
        cfg["ADMIN_CONSOLE"] = False
        raise ConfigError(f"ADMIN_CONSOLE={value!r} is not a switch: write ADMIN_CONSOLE=1 "
                          "(serve the support console at /admin/) or ADMIN_CONSOLE=0 (no console)")
    if not cfg["ADMIN_CONSOLE"]:
        return
    if production:  # HTTPS only (nginx terminates TLS; README, Support console)
        cfg["SESSION_COOKIE_SECURE"] = True
    generate = "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
    key = cfg.get("SECRET_KEY")
    if not key:
        if production:
            raise ConfigError("SECRET_KEY is not set: production needs a key of 32+ random bytes "
                              f"to sign the support console's sessions, e.g. {generate} (or "
                              "ADMIN_CONSOLE=0: no console)")
        cfg["SECRET_KEY"] = _instance_secret(instance_path, SECRET_KEY_FILE,
                                             lambda: secrets.token_urlsafe(48))
    elif production and len(str(key).encode()) < 32:
        raise ConfigError(f"SECRET_KEY is shorter than 32 bytes: use 32+ random bytes, e.g. "
                          f"{generate}")


def _erasure_key(cfg: MutableMapping[str, Any], instance_path: str, production: bool) -> None:
    generate = "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
    if not cfg.get("ERASURE_KEY"):
        if production:
            raise ConfigError("ERASURE_KEY is not set: production needs a key of 32+ random "
                              f"bytes for the markers of deleted accounts, e.g. {generate} "
                              "(keep it: never rotate it)")
        cfg["ERASURE_KEY"] = _instance_secret(instance_path, ERASURE_KEY_FILE,
                                              lambda: secrets.token_urlsafe(48))
    elif production and len(cfg["ERASURE_KEY"].encode()) < 32:
        raise ConfigError(f"ERASURE_KEY is shorter than 32 bytes: use 32+ random bytes, e.g. "
                          f"{generate} (keep it: never rotate it)")


def _session_keys(cfg: MutableMapping[str, Any], instance_path: str, production: bool) -> None:
    """(the cipher itself is built by create_app, from this value)"""
    generate = ("python3 -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'")
    if not cfg.get("SESSION_KEY_ENCRYPTION_KEY"):
        if production:
            raise ConfigError("SESSION_KEY_ENCRYPTION_KEY is not set: production needs a Fernet "
                              f"key, e.g. {generate}")
        cfg["SESSION_KEY_ENCRYPTION_KEY"] = _instance_secret(
            instance_path, SESSION_KEY_FILE, lambda: Fernet.generate_key().decode())
    try:
        keys = [Fernet(k.strip().encode()) for k in cfg["SESSION_KEY_ENCRYPTION_KEY"].split(",")
                if k.strip()]
    except (ValueError, TypeError, AttributeError):
        keys = None
    if not keys:
        raise ConfigError("SESSION_KEY_ENCRYPTION_KEY is malformed: each key must be a Fernet "
                          f"key (urlsafe base64 of 32 bytes), e.g. {generate}")


def _redact(url: str) -> str:
    """`url` with the password of ``[scheme://]user:password@`` replaced by ``***``."""
    return re.sub(r"^((?:[^/]*//)?[^/@:]*:)[^/@]*@", r"\1***@", url)


def database_url(value: str) -> URL:
    """DATABASE_URL as the SQLAlchemy URL wxauth connects with.

    ``postgres://`` and ``postgresql://`` take psycopg 3 (``postgresql+psycopg://``),
    ``mysql://`` and ``mariadb://`` PyMySQL (``mysql+pymysql://``, ``mariadb+pymysql://``);
    those spelled out already and ``sqlite:///…`` are kept. PostgreSQL may name several hosts
    in libpq's own form (``postgresql://user@h1:5432,h2:5433/wxauth``, see `_several_hosts`).

    Raises:
        ConfigError: the URL is malformed, of another database, names another driver, or its
            driver is not installed; the message says what to write.
    """
    shown = _redact(value)
    try:
        url = _several_hosts(value, shown) or make_url(value)
    except ConfigError:
        raise
    except Exception:  # SQLAlchemy's ArgumentError, or ValueError for a bad port
        raise ConfigError(f"DATABASE_URL={shown!r} is not a database URL: write e.g. "
                          f"{_DATABASE_EXAMPLES}") from None
    backend = url.get_backend_name()
    driver = DRIVERS.get(backend)
    if driver is None:
        raise ConfigError(f"DATABASE_URL={shown!r}: wxauth runs on PostgreSQL, MySQL/MariaDB or "
                          f"SQLite, not {backend}: write e.g. {_DATABASE_EXAMPLES}")
    fixed = url.set(drivername=driver)
    if url.drivername not in (backend, driver, "sqlite+pysqlite"):  # another driver
        raise ConfigError(f"DATABASE_URL={shown!r}: wxauth connects with {driver}, not "
                          f"{url.drivername}: write {driver}{shown[shown.index('://'):]}")
    try:
        fixed.get_dialect().import_dbapi()
    except ImportError as exc:
        raise _missing_driver(driver, exc.name) from None
    return fixed


def _missing_driver(driver: str, package: str | None) -> ConfigError:
    return ConfigError(f"DATABASE_URL: {driver} needs the {package} package, which is not "
                       "installed: pip install -r requirements.txt")


# scheme://[user[:password]@]h1[:p1],h2…: several hosts when the part after the last @ of
# the authority has a comma
_AUTHORITY = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)")


def _several_hosts(value: str, shown: str) -> URL | None:
    """libpq's URL naming several PostgreSQL hosts, tried in order
    (``postgresql://user:pw@h1:5432,h2:5433/wxauth?target_session_attrs=read-write``), as
    the URL SQLAlchemy's psycopg dialect takes for it
    (``postgresql://user:pw@/wxauth?host=h1,h2&port=5432,5433&target_session_attrs=…``:
    SQLAlchemy's parser takes one host:port only); None for a URL with one host. libpq
    (psycopg's `conninfo_to_dict`) parses it, as it would connect with it: brackets around
    IPv6 addresses, percent-escapes, its own query parameters only.

    Raises:
        ConfigError: not PostgreSQL, a malformed part (the password never shown), a port that
            is not a number, or hosts/ports also given as ``host=``/``port=``.
    """
    match = _AUTHORITY.match(value)
    if match is None or "," not in match["authority"].rpartition("@")[2]:
        return None
    scheme = match["scheme"]
    if DRIVERS.get(scheme.partition("+")[0].lower()) != DRIVERS["postgresql"]:
        raise ConfigError(f"DATABASE_URL={shown!r}: several hosts are for PostgreSQL only: "
                          "name one host (a proxy or a virtual address in front of the others)")
    try:
        from psycopg import Error
        from psycopg.conninfo import conninfo_to_dict
    except ImportError as exc:
        raise _missing_driver(DRIVERS["postgresql"], exc.name) from None
    example = ("write e.g. postgresql://user:password@db1:5432,db2:5432/wxauth"
               "?target_session_attrs=read-write")
    try:
        params = conninfo_to_dict("postgresql" + value[len(scheme):])
    except Error as exc:  # libpq's message may quote the part it could not read
        password = re.match(r"[^/]*//[^/@:]*:([^/@]*)@", value)
        reason = str(exc).strip()
        if password and password[1]:
            reason = reason.replace(password[1], "***")
        raise ConfigError(f"DATABASE_URL={shown!r} is malformed ({reason}): {example}") from None
    query = urlsplit(value).query
    if re.search(r"(^|&)(host|port)=", query):
        raise ConfigError(f"DATABASE_URL={shown!r} names hosts both before the path and as "
                          f"host=/port=: name them once, before the path; {example}")
    hosts, ports = params["host"].split(","), params.get("port", "").split(",")
    bad = [port for port in ports if port and not (port.isdigit() and 0 < int(port) < 65536)]
    if bad or "" in hosts:
        what = f"port {bad[0]!r} is not a port number" if bad else "a host is empty"
        raise ConfigError(f"DATABASE_URL={shown!r}: {what}: {example}")
    rest = {k: v for k, v in params.items() if k not in ("user", "password", "dbname", "host",
                                                         "port")}
    if any(ports):  # (one per host: libpq fills the hosts' without one with "")
        rest["port"] = params["port"]
    return URL.create(scheme, username=params.get("user"), password=params.get("password"),
                      database=params.get("dbname"), query={"host": ",".join(hosts), **rest})


def _api_docs(cfg: MutableMapping[str, Any]) -> None:
    """``API_DOCS`` to a bool (``1``/``0``; also true/false, yes/no, on/off, or a bool);
    ``API_BASE_URL`` an http(s) URL without query or fragment, when set."""
    value = cfg.get("API_DOCS")
    text = str(value).strip().lower()
    if isinstance(value, bool):
        cfg["API_DOCS"] = value
    elif text in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        cfg["API_DOCS"] = text in ("1", "true", "yes", "on")
    else:
        cfg["API_DOCS"] = True
        raise ConfigError(f"API_DOCS={value!r} is not a switch: write API_DOCS=1 (serve "
                          "/openapi.json and /docs) or API_DOCS=0 (neither)")
    base_url = cfg.get("API_BASE_URL")
    if base_url and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", base_url):
        raise ConfigError(f"API_BASE_URL={base_url!r} is not an http(s) URL without query: "
                          "write e.g. API_BASE_URL=https://api.example.com")


def _database(cfg: MutableMapping[str, Any], instance_path: str) -> None:
    """Default SQLite file; the URL's driver (`database_url`); pool and charset options per
    backend."""
    if not cfg.get("SQLALCHEMY_DATABASE_URI"):
        cfg["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + str(Path(instance_path) / "wxauth.db")
    url = database_url(str(cfg["SQLALCHEMY_DATABASE_URI"]))
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
        # utf8mb4, or emoji nicknames fail with "Incorrect string value"
        charset = url.query.get("charset", "utf8mb4")
        if charset != "utf8mb4":
            raise ConfigError(f"DATABASE_URL: charset={charset} cannot store emoji nicknames: "
                              "write charset=utf8mb4 (or leave it out)")
        url = url.update_query_dict({"charset": "utf8mb4"})
    cfg["SQLALCHEMY_DATABASE_URI"] = url.render_as_string(hide_password=False)
    cfg["SQLALCHEMY_ENGINE_OPTIONS"] = options


def redis_url(value: str) -> str:
    """REDIS_URL checked with redis-py's own parser: ``redis://``, ``rediss://`` (TLS) or
    ``unix://``, or ``redis+sentinel://[:password@]host:port[,host:port…]/service_name[/db]``
    (a master found through Redis Sentinel, `wxauth.infra.store.parse_sentinel_url`);
    returns the URL the login rate limit (limits) takes for it (``redis+unix://`` for a
    socket, the others unchanged).

    Raises:
        ConfigError: what to write instead, e.g. ``redis://localhost:6379/0`` for
            ``localhost:6379``; never the password.
    """
    from redis.connection import parse_url  # only when Redis is used (its weight)

    from wxauth.infra.store import SENTINEL_SCHEME, parse_sentinel_url

    shown = _redact(value)
    scheme, sep, rest = value.partition("://")
    if not sep:
        raise ConfigError(f"REDIS_URL={shown!r} has no scheme: write REDIS_URL=redis://"
                          f"{shown}{'' if '/' in value else '/0'}")
    if scheme.lower() == SENTINEL_SCHEME:
        try:
            parse_sentinel_url(value)
        except ValueError as exc:
            userinfo, at, hosts = rest.rpartition("@")
            user, colon, _ = userinfo.partition(":")
            shown = f"{scheme}://{user + colon if colon else ''}{'***' if at else ''}{at}{hosts}"
            raise ConfigError(f"REDIS_URL={shown!r} is malformed ({exc}): write e.g. "
                              f"REDIS_URL={SENTINEL_SCHEME}://sentinel-1:26379,sentinel-2:26379,"
                              "sentinel-3:26379/mymaster") from None
        return value
    if scheme.lower() not in _REDIS_SCHEMES:
        raise ConfigError(f"REDIS_URL={shown!r}: {scheme}:// is not Redis: write "
                          "redis://host:6379/0, rediss://host:6379/0 (TLS), "
                          "unix:///path/to/redis.sock or "
                          f"{SENTINEL_SCHEME}://host:26379,host:26379/service_name")
    database = urlsplit(value).path.strip("/") if scheme.lower() != "unix" else "0"
    try:
        parse_url(value)
        if database and not database.isdigit():
            raise ValueError(f"database {database!r} is not a number")
    except ValueError as exc:
        raise ConfigError(f"REDIS_URL={shown!r} is malformed ({exc}): write e.g. "
                          "REDIS_URL=redis://host:6379/0") from None
    return "redis+unix://" + rest if scheme.lower() == "unix" else value


def _redis(cfg: MutableMapping[str, Any]) -> None:
    """The login rate limit counts with the rest of the shared state (wxauth.infra.ratelimit)."""
    storage = redis_url(cfg["REDIS_URL"]) if cfg.get("REDIS_URL") else "memory://"
    cfg.setdefault("RATELIMIT_STORAGE_URI", storage)


def _gevent_patched() -> bool:
    """Whether gevent has patched the standard library (gunicorn's gevent workers)."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("socket")


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
    configuration (``WECHAT_APPS``, else ``WECHAT_APPID`` and ``WECHAT_SECRET``). Empty when
    none is set.

    Raises:
        ConfigError: one line per malformed entry (an appid not of `APPID_SHAPE`, no secret,
            …), naming the variable.
    """
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
            raise ConfigError("WECHAT_APPS must be a JSON object: appid → secret or settings, "
                              f'e.g. {{"{APPID_EXAMPLE}": "…"}}')
        apps, problems = {}, []
        for appid, value in raw.items():
            settings = {"secret": value} if isinstance(value, str) else value
            found = [appid_problem(f"WECHAT_APPS: appid {appid!r}", appid)]
            if not isinstance(settings, dict):
                found.append(f"WECHAT_APPS: entry {appid!r} is malformed: write \"{appid}\": "
                             f'"secret" or "{appid}": {{"secret": "…", "name": "…"}}')
            elif not isinstance(settings.get("secret"), str) or not settings["secret"]:
                found.append(f"WECHAT_APPS: app {appid} has no secret")
            elif settings.get("token_api", "stable") not in ("stable", "classic"):
                found.append(f"WECHAT_APPS: app {appid}: token_api must be stable or classic")
            found = [line for line in found if line]
            problems += found
            if not found:
                apps[appid] = app_settings(cfg, appid, **settings)
        if problems:
            raise ConfigError(problems)
        return apps
    appid, secret = cfg.get("WECHAT_APPID"), cfg.get("WECHAT_SECRET")
    if not appid:
        return {}
    problems = [appid_problem(f"WECHAT_APPID={appid!r}", appid),
                None if secret else "WECHAT_SECRET is not set (WECHAT_APPID is)"]
    if any(problems):
        raise ConfigError([line for line in problems if line])
    return {appid: app_settings(cfg, appid, secret)}


def appid_problem(label: str, appid: Any) -> str | None:
    """None when `appid` has a mini-program appid's shape (`APPID_SHAPE`), else the problem,
    starting with `label`. Lowercase only, as WeChat writes appids (in encryptedData's
    watermark, for one): wxauth compares them as text and keys users by them."""
    text = str(appid)
    if APPID_SHAPE.match(text):
        return None
    if APPID_SHAPE.match(text.lower()):
        return f"{label} must be lowercase, as WeChat writes it: write {text.lower()}"
    return (f"{label} is not a mini-program appid (wx and 16 hex digits): write the "
            f"AppID(小程序ID) the admin console shows, e.g. {APPID_EXAMPLE}")


def app_settings(cfg: MutableMapping[str, Any], appid: str, secret: str, name: str | None = None,
                 content_check: bool | None = None, token_api: str | None = None,
                 **_ignored: Any) -> dict[str, Any]:
    """One mini-program's settings, the app-wide ones (``WECHAT_CONTENT_CHECK``,
    ``WECHAT_TOKEN_API``) filling what it does not set itself."""
    return {"secret": secret, "name": str(name or appid),
            "content_check": bool(cfg["WECHAT_CONTENT_CHECK"] if content_check is None
                                  else content_check),
            "token_api": token_api or cfg["WECHAT_TOKEN_API"]}

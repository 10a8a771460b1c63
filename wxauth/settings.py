"""Settings that depend on the mode (development or production), applied at app creation.

Production (not ``FLASK_DEBUG`` and not ``TESTING``) fails fast with a `ConfigError` naming
the missing variable. Development fills the gaps: the built-in WeChat emulator, a random
JWT key and session_key encryption key kept in the instance folder, a SQLite file there.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet
from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import make_url

from config import ConfigError

from .apps import parse_apps
from . import ratelimit
from .keyring import SessionKeyCipher

JWT_KEY_FILE = "jwt-secret.key"
SESSION_KEY_FILE = "session-key-encryption.key"


def is_production(app: Flask) -> bool:
    return not (app.debug or app.testing)


def apply(app: Flask) -> None:
    """Validate and complete ``app.config``; raises ConfigError in production when incomplete."""
    production = is_production(app)
    cfg = app.config

    _database(app)

    if not cfg.get("JWT_SECRET_KEY"):
        if production:
            raise ConfigError(
                "JWT_SECRET_KEY is not set: production needs a signing key of 32+ random bytes"
            )
        cfg["JWT_SECRET_KEY"] = _instance_secret(app, JWT_KEY_FILE, lambda: secrets.token_urlsafe(48))
    elif production and len(cfg["JWT_SECRET_KEY"].encode()) < 32:
        raise ConfigError("JWT_SECRET_KEY is shorter than 32 bytes: use 32+ random bytes")

    if not cfg.get("SESSION_KEY_ENCRYPTION_KEY"):
        if production:
            raise ConfigError(
                "SESSION_KEY_ENCRYPTION_KEY is not set: production needs a Fernet key, e.g. "
                "python3 -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'")
        cfg["SESSION_KEY_ENCRYPTION_KEY"] = _instance_secret(
            app, SESSION_KEY_FILE, lambda: Fernet.generate_key().decode())
    try:
        app.extensions["session_key_cipher"] = SessionKeyCipher.from_keys(cfg["SESSION_KEY_ENCRYPTION_KEY"])
    except ValueError as exc:
        raise ConfigError(f"SESSION_KEY_ENCRYPTION_KEY is malformed: {exc}") from None

    if cfg["WECHAT_TOKEN_API"] not in ("stable", "classic"):
        raise ConfigError(f"WECHAT_TOKEN_API must be stable or classic, got {cfg['WECHAT_TOKEN_API']!r}")
    if not cfg.get("MEDIA_ROOT"):
        cfg["MEDIA_ROOT"] = str(Path(app.instance_path) / "media")

    if cfg["LOG_FORMAT"] not in ("text", "json"):
        raise ConfigError(f"LOG_FORMAT must be text or json, got {cfg['LOG_FORMAT']!r}")
    if cfg["LOG_LEVEL"] not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {cfg['LOG_LEVEL']!r}")

    # The login rate limit counts with the rest of the shared state (see wxauth.ratelimit).
    cfg.setdefault("RATELIMIT_STORAGE_URI", cfg.get("REDIS_URL") or ratelimit.MEMORY_URI)
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


def _database(app: Flask) -> None:
    """Default SQLite file; pool and charset options per backend."""
    cfg = app.config
    if not cfg.get("SQLALCHEMY_DATABASE_URI"):
        cfg["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + str(Path(app.instance_path) / "wxauth.db")
    try:
        url = make_url(cfg["SQLALCHEMY_DATABASE_URI"])
    except Exception:
        raise ConfigError("DATABASE_URL is not a valid SQLAlchemy URL") from None
    options = dict(cfg.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    backend = url.get_backend_name()
    if backend == "sqlite":
        options.setdefault("connect_args", {}).setdefault("timeout", 30)
    else:
        options.setdefault("pool_pre_ping", True)
        options.setdefault("pool_recycle", cfg["DB_POOL_RECYCLE"])
        options.setdefault("pool_size", cfg["DB_POOL_SIZE"])
        options.setdefault("max_overflow", cfg["DB_MAX_OVERFLOW"])
        options.setdefault("pool_timeout", cfg["DB_POOL_TIMEOUT"])
    if backend in ("mysql", "mariadb") and "charset" not in url.query:
        # utf8mb4, or emoji nicknames fail with "Incorrect string value"
        url = url.update_query_dict({"charset": "utf8mb4"})
        cfg["SQLALCHEMY_DATABASE_URI"] = url.render_as_string(hide_password=False)
    cfg["SQLALCHEMY_ENGINE_OPTIONS"] = options


def parse_networks(value: str | None) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """'127.0.0.1, 10.0.0.0/8' → networks; ValueError when an item is not an address."""
    if not value:
        return ()
    return tuple(ipaddress.ip_network(item.strip(), strict=False)
                 for item in value.split(",") if item.strip())


def _instance_secret(app: Flask, filename: str, generate: Callable[[], str]) -> str:
    """A random key kept in the instance folder, created (mode 0600) on first use.

    Written to a temporary file and hard-linked into place, so processes starting together
    agree on one key and never read a half-written file.
    """
    path = Path(app.instance_path) / filename
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


def tune_sqlite(engine) -> None:
    """WAL journal and a busy timeout, so concurrent requests wait instead of failing."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        # WAL + NORMAL: no fsync per commit; a commit survives a crash of the process, only
        # an OS crash or power loss can lose the last ones (SQLite's recommended WAL setting).
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

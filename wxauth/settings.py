"""Settings that depend on the mode (development or production), applied at app creation.

Production (not ``FLASK_DEBUG`` and not ``TESTING``) fails fast with a `ConfigError` naming
the missing variable. Development fills the gaps: the built-in WeChat emulator, a random
JWT key kept in the instance folder, a SQLite file in the instance folder.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import make_url

from config import ConfigError

JWT_KEY_FILE = "jwt-secret.key"


def is_production(app: Flask) -> bool:
    return not (app.debug or app.testing)


def apply(app: Flask) -> None:
    """Validate and complete ``app.config``; raises ConfigError in production when incomplete."""
    production = is_production(app)
    cfg = app.config

    if not cfg.get("SQLALCHEMY_DATABASE_URI"):
        cfg["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + str(Path(app.instance_path) / "wxauth.db")
    url = make_url(cfg["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() == "sqlite":
        options = dict(cfg.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
        options.setdefault("connect_args", {}).setdefault("timeout", 30)
        cfg["SQLALCHEMY_ENGINE_OPTIONS"] = options

    if not cfg.get("JWT_SECRET_KEY"):
        if production:
            raise ConfigError(
                "JWT_SECRET_KEY is not set: production needs a signing key of 32+ random bytes"
            )
        cfg["JWT_SECRET_KEY"] = _instance_secret(app)

    appid, secret = cfg.get("WECHAT_APPID"), cfg.get("WECHAT_SECRET")
    if appid and not secret:
        raise ConfigError("WECHAT_SECRET is not set (WECHAT_APPID is)")
    if not appid:
        if production:
            raise ConfigError(
                "WECHAT_APPID is not set: production needs WECHAT_APPID and WECHAT_SECRET "
                "(set FLASK_DEBUG=1 for development with the built-in emulator)"
            )
        cfg["WECHAT_EMULATOR"] = True
    else:
        cfg.setdefault("WECHAT_EMULATOR", False)


def _instance_secret(app: Flask) -> str:
    """A random key kept in the instance folder, created (mode 0600) on first use.

    Written to a temporary file and hard-linked into place, so processes starting together
    agree on one key and never read a half-written file.
    """
    path = Path(app.instance_path) / JWT_KEY_FILE
    if path.exists():
        return path.read_text().strip()
    tmp = path.with_name(f".{JWT_KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(48))
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
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

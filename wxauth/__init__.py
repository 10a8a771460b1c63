"""wxauth: the backend WeChat mini-programs log into."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app, send_from_directory
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from config import ConfigError

from . import errors, settings
from .access_token import AccessTokenManager
from .apps import MiniProgram
from .extensions import api, db, jwt
from .logs import configure_logging
from .proxy import TrustedProxyFix
from .ratelimit import RateLimit
from .shared import SharedStore, create_store
from .storage import LocalStorage
from .wechat.client import WeChatClient

EMULATOR_MOUNT = "/_wechat"  # where the built-in emulator is served in development
_EMULATOR_BASE = "http://wechat-emulator.internal"  # in-process transport, no socket


def create_app(config: Mapping[str, Any] | object | None = None) -> Flask:
    """Build the application.

    Args:
        config: settings applied over `config.Config` (a mapping or an object with
            upper-case attributes), e.g. ``{"TESTING": True, "DATABASE_URL": ...}``.

    Raises:
        config.ConfigError: production mode with missing or malformed settings.
    """
    app = Flask(__name__, instance_path=os.environ.get("WXAUTH_INSTANCE_PATH") or None)
    app.config.from_object("config.Config")
    if isinstance(config, Mapping):
        app.config.from_mapping(config)
    elif config is not None:
        app.config.from_object(config)
    os.makedirs(app.instance_path, exist_ok=True)
    settings.apply(app)
    configure_logging(app)

    register_extensions(app)
    register_shared_state(app)
    register_wechat(app)
    register_blueprints(app)
    errors.register_errorhandlers(app)
    register_commands(app)
    return app


MIGRATIONS = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "migrations"))


def register_extensions(app: Flask) -> None:
    db.init_app(app)
    register_migrations(app)
    jwt.init_app(app)
    errors.register_jwt_loaders(jwt)
    api.init_app(app)
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    with app.app_context():
        settings.tune_sqlite(db.engine)


def register_migrations(app: Flask) -> None:
    """Flask-Migrate (``flask --app wsgi db …``) wherever migrations can run: under the flask
    CLI, in development and in tests. A production WSGI worker skips it: it never migrates,
    and alembic would cost each worker ~11 MB."""
    if os.environ.get("FLASK_RUN_FROM_CLI") == "true" or app.debug or app.testing:
        # alembic ≥ 1.17 logs one INFO line per built-in plugin on import: noise before every
        # flask command (its migration lines still show)
        logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
        from flask_migrate import Migrate

        Migrate(app, db, directory=MIGRATIONS, render_as_batch=True, compare_type=True)


def register_shared_state(app: Flask) -> None:
    """The shared store (Redis or in-process), the login rate limit (counted there too) and,
    behind proxies, trusted X-Forwarded-*."""
    cfg = app.config
    app.extensions["shared_store"] = create_store(cfg["REDIS_URL"], cfg["REDIS_PREFIX"])
    try:
        app.extensions["login_rate_limit"] = RateLimit(
            cfg["LOGIN_RATE_LIMIT"], cfg["RATELIMIT_STORAGE_URI"], "login",
            cfg["RATELIMIT_KEY_PREFIX"])
    except ValueError:
        raise ConfigError(f"LOGIN_RATE_LIMIT is malformed: {cfg['LOGIN_RATE_LIMIT']!r} "
                          "(e.g. '60 per minute' or '10/second; 1000/day')") from None
    app.extensions["storage"] = LocalStorage(app.config["MEDIA_ROOT"])
    networks = app.config["TRUSTED_PROXY_NETWORKS"]
    if networks:
        app.wsgi_app = TrustedProxyFix(app.wsgi_app, networks)


def shared_store() -> SharedStore:
    """The current app's SharedStore."""
    return current_app.extensions["shared_store"]


def register_wechat(app: Flask) -> None:
    """A WeChatClient and an AccessTokenManager per mini-program; in emulator mode the
    built-in emulator is mounted and plays the one app."""
    cfg = app.config
    options = dict(timeout=cfg["WECHAT_TIMEOUT"], busy_retries=cfg["WECHAT_BUSY_RETRIES"],
                   proxy=cfg["WECHAT_PROXY"])
    settings_by_app = dict(cfg["WECHAT_APP_SETTINGS"])
    http = None  # a pooled urllib3 PoolManager per client
    base_url = cfg["WECHAT_API_BASE"]
    if cfg["WECHAT_EMULATOR"]:
        from .wechat.emulator import Emulator, WSGITransport  # development only

        emulator = Emulator()
        appid = emulator.default_appid
        settings_by_app = {appid: {"secret": emulator.apps[appid], "name": "emulator",
                                   "content_check": cfg["WECHAT_CONTENT_CHECK"],
                                   "token_api": cfg["WECHAT_TOKEN_API"]}}
        http = WSGITransport(emulator)
        base_url = _EMULATOR_BASE
        app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {EMULATOR_MOUNT: emulator})
        app.extensions["wechat_emulator"] = emulator
        app.logger.info("WECHAT_APPID unset: using the built-in WeChat emulator at %s",
                        EMULATOR_MOUNT)
    programs = {}
    for appid, app_settings in settings_by_app.items():
        client = WeChatClient(appid, app_settings["secret"], base_url=base_url, http=http,
                              **options)
        tokens = AccessTokenManager(client, app.extensions["shared_store"],
                                    stable=app_settings["token_api"] == "stable")
        programs[appid] = MiniProgram(appid, app_settings["name"], app_settings["content_check"],
                                      client, tokens)
    app.extensions["wechat_apps"] = programs
    cfg["WECHAT_APPID"] = next(iter(programs)) if len(programs) == 1 else None


def register_blueprints(app: Flask) -> None:
    from .auth import blp as auth_blp
    from .health import blp as health_blp
    from .profile import blp as profile_blp

    api.register_blueprint(auth_blp)
    api.register_blueprint(profile_blp)
    api.register_blueprint(health_blp)

    @app.get("/media/<path:name>")
    def media(name: str):
        """Uploaded files (avatars), from the local storage folder."""
        return send_from_directory(app.config["MEDIA_ROOT"], name, max_age=31536000)


def register_commands(app: Flask) -> None:
    from .commands import accounts_cli, apps_cli, users_cli, wechat_cli

    for group in (users_cli, accounts_cli, apps_cli, wechat_cli):
        app.cli.add_command(group)

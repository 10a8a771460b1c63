"""wxauth: the backend WeChat mini-programs log into.

`create_app` builds the application; the ``register_*`` functions below each bind one part.
No module of the package imports this one: what they share is `wxauth.state.state()`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask, send_from_directory
from werkzeug.middleware.dispatcher import DispatcherMiddleware

import config

from . import errors, i18n
from .extensions import api, csrf, db, jwt
from .infra.cipher import SessionKeyCipher
from .infra import database
from .infra.media import LocalStorage
from .infra.store import create_store
from .services.keys import KeyRing, decode_key, encode_key
from .services.programs import MiniProgram
from .state import EMULATOR_MOUNT, EXTENSION_KEY, AppState, state
from .wechat.client import Guard
from .web.body import ReadableBody
from .web.cookies import ConsoleSessionInterface
from .web.logs import configure_logging
from .web.metrics import configure_metrics
from .web.proxy import TrustedProxyFix
from .infra.ratelimit import RateLimit

_EMULATOR_BASE = "http://wechat-emulator.internal"  # in-process transport, no socket
MIGRATIONS = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "migrations"))


def create_app(settings: Mapping[str, Any] | object | None = None) -> Flask:
    """Build the application.

    Args:
        settings: applied over `config.Config` (a mapping or an object with upper-case
            attributes), e.g. ``{"TESTING": True, "DATABASE_URL": ...}``.

    Raises:
        config.ConfigError: production mode with missing or malformed settings.
    """
    app = Flask(__name__, instance_path=os.environ.get("WXAUTH_INSTANCE_PATH") or None)
    app.config.from_object("config.Config")
    if isinstance(settings, Mapping):
        app.config.from_mapping(settings)
    elif settings is not None:
        app.config.from_object(settings)
    # JSON answers carry Chinese (nicknames, problem texts) as UTF-8, not as \uXXXX escapes
    app.json.ensure_ascii = False
    os.makedirs(app.instance_path, exist_ok=True)
    config.complete(app.config, instance_path=app.instance_path,
                    production=not (app.debug or app.testing))
    configure_logging(app)
    configure_metrics(app)

    register_state(app)
    register_extensions(app)
    register_wechat(app)
    register_blueprints(app)
    errors.register_errorhandlers(app)
    register_commands(app)
    return app


def register_state(app: Flask) -> None:
    """The app state (`wxauth.state.AppState`): the session_key cipher, the shared store
    (Redis or in-process), the login and client-authentication rate limits (counted there
    too), media storage; request bodies that cannot be read answer 400 (`web.body`); behind
    proxies, trusted X-Forwarded-*."""
    cfg = app.config

    def rate_limit(setting: str, scope: str) -> RateLimit:
        return RateLimit(cfg[setting], cfg["RATELIMIT_STORAGE_URI"], scope,
                         cfg["RATELIMIT_KEY_PREFIX"], cfg["REDIS_TIMEOUT"],
                         cfg["REDIS_MAX_CONNECTIONS"])

    app.extensions[EXTENSION_KEY] = AppState(
        cipher=SessionKeyCipher.from_keys(cfg["SESSION_KEY_ENCRYPTION_KEY"]),
        store=create_store(cfg["REDIS_URL"], cfg["REDIS_PREFIX"], timeout=cfg["REDIS_TIMEOUT"],
                           max_connections=cfg["REDIS_MAX_CONNECTIONS"]),
        login_rate_limit=rate_limit("LOGIN_RATE_LIMIT", "login"),
        client_auth_rate_limit=rate_limit("CLIENT_AUTH_RATE_LIMIT", "client_auth"),
        admin_signin_rate_limit=rate_limit("ADMIN_SIGNIN_RATE_LIMIT", "admin_signin"),
        media=LocalStorage(cfg["MEDIA_ROOT"]),
        keyring=KeyRing(cfg["JWT_ALGORITHM"], cfg["SIGNING_KEYS_REFRESH"]))
    app.wsgi_app = ReadableBody(app.wsgi_app)  # an unreadable body is a 400
    networks = cfg["TRUSTED_PROXY_NETWORKS"]
    if networks:
        app.wsgi_app = TrustedProxyFix(app.wsgi_app, networks)


def register_extensions(app: Flask) -> None:
    db.init_app(app)
    i18n.init_app(app)
    register_migrations(app)
    jwt.init_app(app)
    jwt.encode_key_loader(encode_key)  # the signing keys in the database (services.keys)
    jwt.decode_key_loader(decode_key)
    api.init_app(app)
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    api.spec.components.security_scheme(  # service clients (client_id:secret), /oauth/…
        "basicAuth", {"type": "http", "scheme": "basic"})
    with app.app_context():
        database.tune(db.engine, app.config["DB_STATEMENT_TIMEOUT"]
                      if app.config["DB_CLIENT_DEADLINE"] else None)


def register_migrations(app: Flask) -> None:
    """Flask-Migrate (``flask --app wsgi db …``) wherever migrations can run: under the flask
    CLI, in development and in tests. A production WSGI worker skips it: it never migrates,
    and alembic weighs on each worker's memory (README, Performance)."""
    if os.environ.get("FLASK_RUN_FROM_CLI") == "true" or app.debug or app.testing:
        # alembic ≥ 1.17 logs one INFO line per built-in plugin on import: noise before every
        # flask command (its migration lines still show)
        logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
        from flask_migrate import Migrate

        Migrate(app, db, directory=MIGRATIONS, render_as_batch=True, compare_type=True)


def register_wechat(app: Flask) -> None:
    """A `MiniProgram` (WeChat client and access_token) per configured app, behind one
    `Guard` (calls in flight, circuit breaker); in emulator mode the built-in emulator is
    mounted at ``/_wechat`` and plays the one app."""
    cfg = app.config
    app_state = state(app)
    # one guard per process, shared by the apps: WeChat's trouble is every app's trouble
    guard = Guard(cfg["WECHAT_MAX_CALLS"], cfg["WECHAT_BREAKER_FAILURES"],
                  cfg["WECHAT_BREAKER_COOLDOWN"])
    options = dict(base_url=cfg["WECHAT_API_BASE"], timeout=cfg["WECHAT_TIMEOUT"],
                   deadline=cfg["WECHAT_DEADLINE"], busy_retries=cfg["WECHAT_BUSY_RETRIES"],
                   proxy=cfg["WECHAT_PROXY"], guard=guard)
    settings_by_app = cfg["WECHAT_APP_SETTINGS"]
    if cfg["WECHAT_EMULATOR"]:
        from .wechat.emulator import Emulator, WSGITransport  # development only

        emulator = Emulator()
        appid = emulator.default_appid
        settings_by_app = {appid: config.app_settings(cfg, appid, emulator.apps[appid],
                                                      name="emulator")}
        options.update(http=WSGITransport(emulator), base_url=_EMULATOR_BASE)
        app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {EMULATOR_MOUNT: emulator})
        app_state.emulator = emulator
        app.logger.info("WECHAT_APPID unset: using the built-in WeChat emulator at %s",
                        EMULATOR_MOUNT)
    app_state.guard = guard
    app_state.programs = {appid: MiniProgram.build(appid, settings, app_state.store, **options)
                          for appid, settings in settings_by_app.items()}
    cfg["WECHAT_APPID"] = next(iter(app_state.programs)) if len(app_state.programs) == 1 else None


def register_blueprints(app: Flask) -> None:
    from .web.auth import blp as auth_blp
    from .web.discovery import blp as discovery_blp
    from .web.docs import register_docs
    from .web.health import blp as health_blp
    from .web.oauth import blp as oauth_blp
    from .web.profile import blp as profile_blp

    api.register_blueprint(auth_blp)
    api.register_blueprint(profile_blp)
    api.register_blueprint(health_blp)
    api.register_blueprint(oauth_blp)
    api.register_blueprint(discovery_blp)
    register_docs(app)
    app.session_interface = ConsoleSessionInterface()  # no session outside /admin
    if app.config["ADMIN_CONSOLE"]:  # the support console (ADMIN_CONSOLE=0: no route at all)
        from .web.admin import blp as admin_blp

        csrf.init_app(app)
        app.register_blueprint(admin_blp)  # a plain Flask blueprint: not in the OpenAPI doc

    @app.get("/media/<path:name>")
    def media(name: str):
        """Uploaded files (avatars), from the local storage folder."""
        return send_from_directory(app.config["MEDIA_ROOT"], name, max_age=31536000)


def register_commands(app: Flask) -> None:
    from .commands import (accounts_cli, apps_cli, audit_cli, clients_cli, keys_cli, logs_cli,
                           operators_cli, users_cli, wechat_cli)

    for group in (users_cli, accounts_cli, apps_cli, wechat_cli, logs_cli, clients_cli,
                  keys_cli, operators_cli, audit_cli):
        app.cli.add_command(group)

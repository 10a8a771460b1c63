"""The app's runtime state: one object per app, built by `wxauth.create_app`, read through
`state()`.

Everything a request needs beyond ``app.config`` and the extensions lives here: the shared
store, the token-signing keys, the login and client-authentication rate limits, media
storage, the session_key cipher, the configured mini-programs and, in development, the
built-in WeChat emulator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

if TYPE_CHECKING:
    from .infra.cipher import SessionKeyCipher
    from .infra.media import Storage
    from .infra.store import SharedStore
    from .services.keys import KeyRing
    from .services.programs import MiniProgram
    from .infra.ratelimit import RateLimit
    from .wechat.client import Guard
    from .wechat.emulator import Emulator

EXTENSION_KEY = "wxauth"
EMULATOR_MOUNT = "/_wechat"  # where the built-in emulator is served in development


@dataclass
class AppState:
    """What `create_app` builds once and every request shares."""

    cipher: SessionKeyCipher
    store: SharedStore
    login_rate_limit: RateLimit
    media: Storage
    keyring: KeyRing
    programs: dict[str, MiniProgram] = field(default_factory=dict)  # by appid
    guard: Guard | None = None  # calls to WeChat in flight, circuit breaker (every app)
    emulator: Emulator | None = None  # development only
    # web.security: verified JWTs (encoded token → claims), per process
    verified_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    # services.clients: failed service-client authentications per address (web.oauth)
    client_auth_rate_limit: RateLimit | None = None
    # services.clients: secrets verified (client_id → (its stored hash, SHA-256 of the
    # secret)), per process, so argon2 runs once per client and secret, not per call
    verified_clients: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    # web.admin: failed console sign-ins per address (ADMIN_SIGNIN_RATE_LIMIT)
    admin_signin_rate_limit: RateLimit | None = None


def state(app: Flask | None = None) -> AppState:
    """The state of `app` (default: the current app)."""
    return (app or current_app).extensions[EXTENSION_KEY]

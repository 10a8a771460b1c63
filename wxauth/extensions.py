"""Extension instances, created bare and bound to the app in `wxauth.create_app`."""

import time

from flask import current_app
from flask_jwt_extended import JWTManager
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase

from .errors import ProblemApi


class Base(DeclarativeBase):
    pass


# Objects stay loaded after a commit: a request that commits and then answers with the same
# user does not read it again.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
# Flask-Migrate (and alembic, ~11 MB) is set up in wxauth.register_migrations, only where
# migrations can run: the flask CLI, development and tests — not in gunicorn's workers.
# The login rate limit is wxauth.ratelimit.RateLimit, built in wxauth.register_shared_state.


class VerifiedTokenCache(JWTManager):
    """flask-jwt-extended's JWTManager, remembering the tokens it has verified.

    flask-jwt-extended parses and checks a token four times per request (PyJWT validates every
    base64 character in Python each time): ~0.15 ms of every authenticated request. A token
    that verified once is the same token the next time, so its claims (a copy each time) are
    kept per app, up to `MAX_TOKENS`, and reused while ``exp`` has not passed (with
    ``JWT_DECODE_LEEWAY``). A token never seen, tampered with or expired takes the full path;
    the revocation and user checks run on every request as before.

    It overrides flask-jwt-extended's ``_decode_jwt_from_config`` (private; the version is
    pinned, and tests/test_tokens.py fails if an upgrade stops calling it).
    """

    MAX_TOKENS = 1024  # per app and process; the cache starts over when full

    def _decode_jwt_from_config(self, encoded_token, csrf_value=None, allow_expired=False):
        if csrf_value is not None or allow_expired:  # not our header-token requests
            return super()._decode_jwt_from_config(encoded_token, csrf_value, allow_expired)
        cache = current_app.extensions.setdefault("wxauth_verified_tokens", {})
        claims = cache.get(encoded_token)
        leeway = current_app.config["JWT_DECODE_LEEWAY"]
        if claims is not None and claims["exp"] + leeway > time.time():
            return dict(claims)
        claims = super()._decode_jwt_from_config(encoded_token, csrf_value, allow_expired)
        if "exp" in claims:  # tokens without an expiry are not remembered
            if len(cache) >= self.MAX_TOKENS:
                cache.clear()
            cache[encoded_token] = dict(claims)
        return claims


jwt = VerifiedTokenCache()
api = ProblemApi()

"""Blueprint `discovery`: ``GET /.well-known/openid-configuration`` and
``GET /.well-known/jwks.json``, for the team's other services (and their JWT libraries) to
verify our tokens without any secret.

Both are public (no credentials, no cookie) and cacheable: ``Cache-Control: public,
max-age=…`` and an ``ETag`` (a matching ``If-None-Match`` answers 304).
"""

from __future__ import annotations

from flask import current_app, jsonify, request, url_for

from ..errors import documents_problems
from ..services import keys
from .schemas import Blueprint, DiscoverySchema, JwksSchema
from .security import issuer

blp = Blueprint("discovery", __name__, description="Token verification for other services")

MAX_AGE = 300  # seconds a service may cache either document
# the claims of the tokens (services.sessions.issue); aud only with JWT_AUDIENCE
CLAIMS_SUPPORTED = ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid", "appid"]


def _cacheable(body: dict):
    response = jsonify(body)
    response.cache_control.public = True
    response.cache_control.max_age = MAX_AGE
    response.add_etag()
    return response.make_conditional(request)


@blp.route("/.well-known/openid-configuration", methods=["GET"])
@blp.doc(operationId="getDiscoveryDocument")
@blp.response(200, DiscoverySchema)
@documents_problems(blp)
def openid_configuration():
    """Where the key set and introspection are (OpenID Connect Discovery / RFC 8414 fields).

    Lists only what wxauth does: ``issuer`` (the tokens' ``iss``), ``jwks_uri``,
    ``introspection_endpoint`` with its client authentication (HTTP Basic), the tokens'
    claims; no authorization or ID-token endpoints (login is WeChat's code exchange at
    POST /auth/login)."""
    document = {
        "issuer": issuer(),
        "jwks_uri": _url("discovery.jwks"),
        "introspection_endpoint": _url("oauth.introspect"),
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic"],
        "claims_supported": CLAIMS_SUPPORTED,
    }
    if current_app.config["API_DOCS"]:
        document["service_documentation"] = _url("swagger_ui.show")
    return _cacheable(document)


@blp.route("/.well-known/jwks.json", methods=["GET"])
@blp.doc(operationId="getJwks")
@blp.response(200, JwksSchema)
@documents_problems(blp)
def jwks():
    """The public keys that verify our tokens (a JWK Set, RFC 7517), matched by kid.

    The current signing key, the keys staged to sign next and the retired ones whose tokens
    may still be live; empty with JWT_ALGORITHM=HS256. Fetch it again when a token names a
    ``kid`` not in your copy."""
    return _cacheable(keys.published())


def _url(endpoint: str) -> str:
    """The absolute URL of `endpoint`: under ``API_BASE_URL`` when set."""
    base = current_app.config["API_BASE_URL"]
    if base:
        return base.rstrip("/") + url_for(endpoint)
    return url_for(endpoint, _external=True)

"""Blueprint `oauth`: endpoints for the team's services, which authenticate as service
clients (HTTP Basic ``client_id:secret``, `wxauth.services.clients`), never as users.

Every answer carries ``Cache-Control: no-store``. A failed client authentication answers
401 ``invalid_client`` with ``WWW-Authenticate: Basic realm="wxauth"``; failures are counted
per client address (``CLIENT_AUTH_RATE_LIMIT``), beyond which 429 ``rate_limited``.
"""

from __future__ import annotations

import functools

from flask import request

from ..errors import WECHAT_CODES, Problem, documents_problems
from ..services import clients
from .ratelimit import failures_limited
from .schemas import (Blueprint, IntrospectionRequestSchema, IntrospectionSchema,
                      WeChatTokenRequestSchema, WeChatTokenSchema)
from .security import issuer, verified_claims

blp = Blueprint("oauth", __name__, url_prefix="/oauth",
                description="For the team's services (service clients, HTTP Basic)")

BASIC_DOC = [{"basicAuth": []}]
CLIENT_CODES = ("invalid_client", "rate_limited")


@blp.after_request
def no_store(response):
    response.headers["Cache-Control"] = "no-store"
    return response


def client_required(blp, scope: str, *problems: str):
    """Decorate a view of `blp` for service clients holding `scope`; put it right under
    ``@blp.route`` (the client is checked before the body is parsed). `problems`: the other
    problem codes the view can answer."""

    def decorator(view):
        documented = blp.doc(security=BASIC_DOC)(
            documents_problems(blp, *problems, *CLIENT_CODES)(view))

        @functools.wraps(documented)
        def wrapper(*args, **kwargs):
            _authenticate(scope)
            return documented(*args, **kwargs)

        return wrapper

    return decorator


@failures_limited("client_auth_rate_limit", "invalid_client")
def _authenticate(scope: str) -> None:
    credentials = request.authorization
    basic = credentials is not None and credentials.type == "basic"
    try:
        clients.authenticate(credentials.username if basic else None,
                             credentials.password if basic else None, scope,
                             request.remote_addr)
    except Problem as problem:
        problem.headers["WWW-Authenticate"] = 'Basic realm="wxauth"'
        raise


@blp.route("/introspect", methods=["POST"])
@blp.doc(operationId="introspectToken")
@client_required(blp, "introspect", "invalid_request")
@blp.arguments(IntrospectionRequestSchema, location="form")
@blp.response(200, IntrospectionSchema)
def introspect(args):
    """Whether a token is live, and whose (RFC 7662 token introspection).

    For services (client scope ``introspect``): send the form field ``token`` (an access or
    a refresh token; ``token_type_hint`` is accepted and not needed). A live token answers
    ``active: true`` with ``sub`` (openid), ``appid``, ``sid`` (its session), ``jti``,
    ``exp`` and ``iat`` (seconds since the epoch), ``token_type`` (``access`` or
    ``refresh``), ``unionid`` (null when none), ``account_id`` and, when ``API_BASE_URL`` is
    set, ``iss``. Any other token — expired, malformed, signed with another key, logged
    out, kicked, of a disabled or deleted user — answers ``{"active": false}`` and nothing
    else. The check reads the database on every call: a logout on any instance shows at the
    next call.
    """
    try:
        claims = verified_claims(args["token"])
    except Problem:
        return dict(clients.INACTIVE)
    return clients.introspect(claims, issuer())


@blp.route("/wechat/access_token", methods=["GET"])
@blp.doc(operationId="getWeChatAccessToken")
@client_required(blp, "wechat_token", "invalid_request", "unknown_app", *WECHAT_CODES)
@blp.arguments(WeChatTokenRequestSchema, location="query")
@blp.response(200, WeChatTokenSchema)
def wechat_access_token(args):
    """WeChat's access_token of a mini-program, for the team's services.

    For services (client scope ``wechat_token``). The token this server already keeps
    (shared by its workers and instances): no fetch from WeChat when one is cached, never a
    forced refresh, so no other service needs the AppSecret or fetches its own (which, with
    the classic endpoint, would invalidate ours).
    ``appid`` may be left out when the server serves one mini-program; 400 ``unknown_app``
    for one it does not serve. ``expires_in``: seconds left; ask again when it runs out or
    WeChat answers 40001/42001.
    """
    return clients.wechat_access_token(args.get("appid"))

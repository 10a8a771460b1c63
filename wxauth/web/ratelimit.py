"""Rate limits over HTTP, per client address, counted by `wxauth.infra.ratelimit.RateLimit`
(in Redis when ``REDIS_URL`` is set, so every worker and instance shares one budget; in
this process otherwise, and while Redis fails).

`limited` counts every request: ``LOGIN_RATE_LIMIT``. Responses of ``POST /auth/login``
carry ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (epoch
seconds); beyond the limit it answers 429 ``rate_limited`` with ``Retry-After`` (seconds).
`failures_limited` counts failures only: ``CLIENT_AUTH_RATE_LIMIT``, the service clients'
failed authentications (``/oauth/…``).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable

from flask import after_this_request, request

from ..errors import Problem
from ..i18n import _l
from ..infra.ratelimit import Refusals, Window
from ..state import state


def limited(name: str, on_closed: Callable[[list[Refusals]], None] | None = None):
    """Decorate a view: the `RateLimit` `name` of the app state (e.g. ``"login_rate_limit"``)
    counts each request (before its body is parsed) and its headers go on the response, error
    responses too. `on_closed` gets the refusals a hit hands out to be written down (the
    login log's; `wxauth.infra.ratelimit`, the refusal book), before the request goes on."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            verdict = getattr(state(), name).hit(request.remote_addr or "-",
                                                 request.headers.get("User-Agent"))
            if verdict.closed and on_closed is not None:
                on_closed(verdict.closed)
            if not verdict.allowed:
                raise _refusal(verdict.window)
            headers = _headers(verdict.window)

            @after_this_request
            def add_headers(response):
                response.headers.update(headers)
                return response

            return view(*args, **kwargs)

        return wrapper

    return decorator


def failures_limited(name: str, *codes: str):
    """Decorate a view: the `RateLimit` `name` of the app state (e.g.
    ``"client_auth_rate_limit"``) counts only the view's failures, the Problems of `codes`
    (e.g. ``invalid_client``), per client address. Once an address has used up the limit,
    its requests answer 429 ``rate_limited`` with ``Retry-After`` before the view runs (a
    correct secret too, so refusals tell nothing), until the window ends; the failure that
    uses it up answers 429 as well."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            limit = getattr(state(), name)
            address = request.remote_addr or "-"
            window = limit.exhausted(address)
            if window is not None:
                raise _refusal(window)
            try:
                return view(*args, **kwargs)
            except Problem as problem:
                if problem.kind.code not in codes:
                    raise
                verdict = limit.hit(address, request.headers.get("User-Agent"))
                if not verdict.allowed:
                    raise _refusal(verdict.window) from None
                raise

        return wrapper

    return decorator


def _headers(window: Window) -> dict[str, str]:
    return {"X-RateLimit-Limit": str(window.limit.amount),
            "X-RateLimit-Remaining": str(window.remaining),
            "X-RateLimit-Reset": str(math.ceil(window.reset_at))}


def _refusal(window: Window) -> Problem:
    """The 429 for `window`, with its ``X-RateLimit-*`` headers and ``Retry-After``."""
    headers = _headers(window)
    headers["Retry-After"] = str(max(1, math.ceil(window.reset_at - time.time())))
    return Problem("rate_limited", _l("Rate limit reached (%(limit)s).", limit=str(window.limit)),
                   headers=headers)

"""The login rate limit over HTTP: ``LOGIN_RATE_LIMIT`` per client address, counted by
`wxauth.infra.ratelimit.RateLimit` (in Redis when ``REDIS_URL`` is set, so every worker and
instance shares one budget; in this process otherwise, and while Redis fails).

Responses of ``POST /auth/login`` carry ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and
``X-RateLimit-Reset`` (epoch seconds); beyond the limit it answers 429 ``rate_limited`` with
``Retry-After`` (seconds).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable

from flask import after_this_request, request

from ..errors import Problem
from ..i18n import _l
from ..infra.ratelimit import Refusals
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
            window = verdict.window
            headers = {"X-RateLimit-Limit": str(window.limit.amount),
                       "X-RateLimit-Remaining": str(window.remaining),
                       "X-RateLimit-Reset": str(math.ceil(window.reset_at))}
            if not verdict.allowed:
                headers["Retry-After"] = str(max(1, math.ceil(window.reset_at - time.time())))
                raise Problem("rate_limited",
                              _l("Rate limit reached (%(limit)s).", limit=str(window.limit)),
                              headers=headers)

            @after_this_request
            def add_headers(response):
                response.headers.update(headers)
                return response

            return view(*args, **kwargs)

        return wrapper

    return decorator

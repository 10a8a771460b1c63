"""The login rate limit: ``LOGIN_RATE_LIMIT`` per client address, on the `limits` library.

`limits` (the library Flask-Limiter is built on) counts in Redis when ``REDIS_URL`` is set,
so every worker and instance shares one budget, and in-process otherwise. It is used here
directly, once per login: Flask-Limiter's per-request bookkeeping around it (limit
resolution in a before-request hook and again in the decorator, header injection, request
filters) cost more than the counter itself (README, Performance).

Responses of ``POST /auth/login`` carry ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and
``X-RateLimit-Reset`` (epoch seconds); beyond the limit it answers 429 ``rate_limited`` with
``Retry-After`` (seconds).

Counters live in Redis when ``REDIS_URL`` is set (production), in limits' own in-process
``MemoryStorage`` otherwise (development, one process).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable

from flask import after_this_request, request
from limits import parse_many
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from ..errors import Problem
from ..i18n import _l
from ..infra.store import redis_pool
from ..state import state

class RateLimit:
    """Fixed-window limits for one kind of request, keyed by client address.

    Args:
        limits: limits' notation, e.g. ``"60 per minute"`` or ``"10/second; 1000/day"``.
        storage_uri: ``redis://…``, ``rediss://…``, ``redis+unix://…`` (shared) or
            ``memory://`` (this process).
        scope: names the counters: ``<key_prefix>/<address>/<scope>``.
        key_prefix: e.g. ``REDIS_PREFIX`` + ``"ratelimit"``.
        timeout: seconds to connect to Redis, per command and to wait for a connection.
        max_connections: Redis connections per process.

    Raises:
        ValueError: malformed `limits`.
    """

    def __init__(self, limits: str, storage_uri: str, scope: str, key_prefix: str = "",
                 timeout: float = 2.0, max_connections: int = 100):
        self.items = parse_many(limits)
        options = {}
        if storage_uri.startswith(("redis://", "rediss://", "redis+unix://")):  # bounded, waiting
            # pool; redis+unix:// is limits' name for redis-py's unix://
            options = dict(connection_pool=redis_pool(
                storage_uri.replace("redis+unix://", "unix://", 1), timeout=timeout,
                max_connections=max_connections))
        # wrap_exceptions: a Redis failure is limits' StorageError (503 store_unavailable)
        self.strategy = FixedWindowRateLimiter(
            storage_from_string(storage_uri, wrap_exceptions=True, **options))
        self.scope = scope
        self.key_prefix = key_prefix

    def hit(self, address: str) -> dict[str, str]:
        """Count one request from `address`.

        Returns:
            The ``X-RateLimit-*`` headers (of the tightest limit).

        Raises:
            Problem(rate_limited) with those headers and ``Retry-After`` (seconds).
        """
        ids = (self.key_prefix, address, self.scope)
        headers, best_remaining = {}, None
        for item in self.items:
            allowed = self.strategy.hit(item, *ids)
            reset_at, remaining = self.strategy.get_window_stats(item, *ids)
            if best_remaining is None or remaining < best_remaining or not allowed:
                best_remaining = remaining
                headers = {"X-RateLimit-Limit": str(item.amount),
                           "X-RateLimit-Remaining": str(remaining),
                           "X-RateLimit-Reset": str(math.ceil(reset_at))}
            if not allowed:
                headers["Retry-After"] = str(max(1, math.ceil(reset_at - time.time())))
                raise Problem("rate_limited", _l("Rate limit reached (%(limit)s).", limit=str(item)),
                              headers=headers)
        return headers


def limited(name: str, on_refused: Callable[[], None] | None = None):
    """Decorate a view: the `RateLimit` `name` of the app state (e.g. ``"login_rate_limit"``)
    counts each request (before its body is parsed) and its headers go on the response, error
    responses too. `on_refused` is called before a refusal (429) is answered."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            try:
                headers = getattr(state(), name).hit(request.remote_addr or "-")
            except Problem:
                if on_refused is not None:
                    on_refused()
                raise

            @after_this_request
            def add_headers(response):
                response.headers.update(headers)
                return response

            return view(*args, **kwargs)

        return wrapper

    return decorator

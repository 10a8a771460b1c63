"""The login rate limit: ``LOGIN_RATE_LIMIT`` per client address, on the `limits` library.

`limits` (the library Flask-Limiter is built on) counts in Redis when ``REDIS_URL`` is set,
so every worker and instance shares one budget, and in-process otherwise. It is used here
directly, once per login: Flask-Limiter's per-request bookkeeping around it (limit
resolution in a before-request hook and again in the decorator, header injection, request
filters) was a sixth of the instructions of a whole returning login (callgrind, ``make
bench``'s scenario), for one counter.

Responses of ``POST /auth/login`` carry ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and
``X-RateLimit-Reset`` (epoch seconds); beyond the limit it answers 429 ``rate_limited`` with
``Retry-After`` (seconds).

In-process counters use `SweptMemoryStorage` (``wxauth-memory://``): limits'
``MemoryStorage`` sweeps expired counters from a ``threading.Timer`` that it starts again
whenever the previous one has finished, 10 ms later — under load a new thread for nearly
every login, about 0.6 ms of worker CPU each (thread start-up and GIL hand-offs). The sweep
is done inline instead, at most once per `SweptMemoryStorage.SWEEP_INTERVAL` seconds.
Counters still expire exactly: limits checks a key's expiry whenever it reads it.
"""

from __future__ import annotations

import functools
import math
import time

from flask import after_this_request, current_app, request
from limits import parse_many
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from .errors import Problem

MEMORY_URI = "wxauth-memory://"

# The hook replaced below is private to limits; tests/test_hardening.py fails if an upgrade
# renames it, rather than letting a thread per login come back unnoticed.
SCHEDULE_HOOK = "_MemoryStorage__schedule_expiry"
SWEEP_HOOK = "_MemoryStorage__expire_events"


class SweptMemoryStorage(MemoryStorage):
    """limits' ``MemoryStorage`` sweeping expired entries inline instead of by timer threads.

    Registered with limits under the ``wxauth-memory://`` scheme (limits registers every
    ``Storage`` subclass by its ``STORAGE_SCHEME``).
    """

    STORAGE_SCHEME = ["wxauth-memory"]
    SWEEP_INTERVAL = 1.0  # seconds

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options):
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._next_sweep = time.monotonic() + self.SWEEP_INTERVAL

    def _MemoryStorage__schedule_expiry(self) -> None:  # noqa: N802 (limits' private name)
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.SWEEP_INTERVAL
            getattr(self, SWEEP_HOOK)()


class RateLimit:
    """Fixed-window limits for one kind of request, keyed by client address.

    Args:
        limits: limits' notation, e.g. ``"60 per minute"`` or ``"10/second; 1000/day"``.
        storage_uri: ``redis://…`` (shared) or ``wxauth-memory://`` (this process).
        scope: names the counters: ``<key_prefix>/<address>/<scope>``.
        key_prefix: e.g. ``REDIS_PREFIX`` + ``"ratelimit"``.

    Raises:
        ValueError: malformed `limits`.
    """

    def __init__(self, limits: str, storage_uri: str, scope: str, key_prefix: str = ""):
        self.items = parse_many(limits)
        self.strategy = FixedWindowRateLimiter(storage_from_string(storage_uri))
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
                raise Problem("rate_limited", f"Rate limit reached ({item}).", headers=headers)
        return headers


def limited(extension_key: str):
    """Decorate a view: `RateLimit` ``app.extensions[extension_key]`` counts each request
    (before its body is parsed) and its headers go on the response, error responses too."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            headers = current_app.extensions[extension_key].hit(request.remote_addr or "-")

            @after_this_request
            def add_headers(response):
                response.headers.update(headers)
                return response

            return view(*args, **kwargs)

        return wrapper

    return decorator

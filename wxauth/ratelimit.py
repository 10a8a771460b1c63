"""In-process storage for Flask-Limiter's counters when there is no Redis.

limits' ``MemoryStorage`` (``memory://``) sweeps expired counters from a ``threading.Timer``
that it starts again whenever the previous one has finished, 10 ms later: under load that is
a new thread for nearly every login. Starting it, and the GIL hand-offs it causes, cost
about 0.6 ms of worker CPU per login in ``make bench`` (2 sync workers, SQLite) — a quarter of
the whole login. `SweptMemoryStorage` is the same storage with the sweep done inline, at most
once per `SWEEP_INTERVAL` seconds. Counters still expire exactly: limits checks a key's
expiry whenever it reads it; the sweep only frees memory.

Selected with ``RATELIMIT_STORAGE_URI=wxauth-memory://`` (the default without ``REDIS_URL``).
"""

from __future__ import annotations

import time

from limits.storage import MemoryStorage

STORAGE_URI = "wxauth-memory://"

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

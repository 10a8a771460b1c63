"""The WeChat access_token, shared by every worker and instance.

The token is cached in the shared store (Redis in production) for ``expires_in`` minus a
margin. At most one fetch runs at a time across all workers: a fetcher takes a lock (with a
timeout) and checks the cache again before calling WeChat, so a crowd of workers waiting on
an empty cache makes one fetch, not one each. getStableAccessToken is the default (several
fetchers get the same token); the classic ``/cgi-bin/token`` invalidates the previous token on
every fetch, which is what turns independent per-process caches into 40001 storms.

`call` runs an API call with the token and, on 40001/42001, invalidates the cached token only
if it is still the one that failed (another worker may have replaced it already), fetches
once more and retries the call once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

from .. import metrics
from .client import AccessTokenInvalid, WeChatClient

log = logging.getLogger(__name__)
T = TypeVar("T")


class TokenStore(Protocol):
    """What the cache needs of a store shared by every worker (`wxauth.infra.store`):
    text values with TTLs in seconds, a lock across workers, and `unavailable`, the
    exception its methods raise when the store fails (``StoreUnavailable``)."""

    unavailable: type[Exception]

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str, ttl: float | None = None, *,
            only_if_absent: bool = False) -> bool: ...

    def delete(self, key: str, *, only_if_value: str | None = None) -> bool: ...

    def lock(self, name: str, timeout: float, wait: float) -> AbstractContextManager[None]: ...


class AccessTokenManager:
    """Cached access_token for one mini-program.

    While the shared store fails (its `unavailable` exception: Redis down, refusing or
    silent), the token comes from a cache of this process, fetched with getStableAccessToken
    whatever `stable` says (the classic endpoint would invalidate the token every other
    process holds): one WARNING per outage, each token served so counted in
    ``wxauth.metrics.STORE_FALLBACKS`` (use ``access_token``). The shared store is tried
    again `store_retry` seconds after it failed, and used again once it answers.

    Args:
        client: the app's WeChatClient.
        store: the shared store (a `TokenStore`: Redis in production).
        stable: getStableAccessToken (default) or the classic /cgi-bin/token.
        margin: seconds before WeChat's expiry at which the cached token is dropped.
        lock_timeout: seconds a fetch may hold the lock (it frees itself after).
        lock_wait: seconds to wait for another worker's fetch before giving up.
        store_retry: seconds after a store failure during which the store is not asked.
    """

    def __init__(self, client: WeChatClient, store: TokenStore, *, stable: bool = True,
                 margin: int = 300, lock_timeout: float = 15, lock_wait: float = 20,
                 store_retry: float = 5):
        self.client = client
        self.store = store
        self.stable = stable
        self.margin = margin
        self.lock_timeout = lock_timeout
        self.lock_wait = lock_wait
        self.store_retry = store_retry
        self.key = f"wechat:access_token:{client.appid}"
        self._own: dict[str, Any] | None = None  # this process's entry while the store fails
        self._own_lock = threading.Lock()
        self._store_failed_at: float | None = None  # monotonic; None: the store works

    def _cached(self) -> tuple[str | None, dict[str, Any] | None]:
        raw = self.store.get(self.key)
        if raw is None:
            return None, None
        try:
            entry = json.loads(raw)
            return raw, entry
        except ValueError:
            return None, None

    def get(self) -> str:
        """The current access_token, fetched from WeChat only when no worker has one cached
        (each fetch counted: `wxauth.metrics.ACCESS_TOKEN_FETCHES`), or, while the shared
        store fails, when this process has none (see the class).

        Raises:
            WeChatError subclasses from the fetch; the store's LockTimeout
            (`wxauth.infra.store.LockTimeout`) when another worker's fetch holds the lock for
            longer than `lock_wait`.
        """
        return self.current()["token"]

    def current(self) -> dict[str, Any]:
        """As `get`, the whole cache entry: ``{"token", "fetched_at", "expires_at"}`` (epoch
        seconds; ``expires_at`` is WeChat's expiry) and ``"kind"``. Never a forced refresh."""
        failed_at = self._store_failed_at
        if failed_at is None or time.monotonic() - failed_at >= self.store_retry:
            try:
                entry = self._shared()
            except self.store.unavailable as exc:
                self._store_failed(exc)
            else:
                if self._store_failed_at is not None:
                    self._store_failed_at, self._own = None, None
                    log.info("the shared store answers again: the WeChat access_token of %s "
                             "is shared again", self.client.appid)
                return entry
        metrics.STORE_FALLBACKS.labels("access_token").inc()
        return self._own_token()

    def _shared(self) -> dict[str, Any]:
        """The entry of the shared store, fetched under its lock when it has none. Raises
        the store's `unavailable` (a token fetched before the store failed is kept by this
        process)."""
        _, entry = self._cached()
        if entry:
            return entry
        with self.store.lock(self.key, timeout=self.lock_timeout, wait=self.lock_wait):
            _, entry = self._cached()  # another worker may have fetched while we waited
            if entry:
                return entry
            entry = self._fetch(self.stable)
            try:
                self.store.set(self.key, json.dumps(entry), self._ttl(entry))
            except self.store.unavailable:
                self._own = entry  # fetched: keep it rather than fetch again
                raise
            return entry

    def _own_token(self) -> dict[str, Any]:
        """This process's token (the store fails), fetched with getStableAccessToken when
        it has none or it is within `margin` of its expiry."""
        with self._own_lock:  # one fetch per process, not one per waiting request
            entry = self._own
            if entry is None or entry["fetched_at"] + self._ttl(entry) <= time.time():
                entry = self._own = self._fetch(True)
            return entry

    def _ttl(self, entry: dict[str, Any]) -> float:
        """Seconds to keep a fetched entry: its lifetime less `margin`, at least 1."""
        return max(1, entry["expires_at"] - entry["fetched_at"] - self.margin)

    def _store_failed(self, exc: Exception) -> None:
        if self._store_failed_at is None:
            log.warning("the shared store failed (%s): each process fetches the WeChat "
                        "access_token of %s itself (getStableAccessToken) until it answers",
                        exc, self.client.appid)
        self._store_failed_at = time.monotonic()

    def _fetch(self, stable: bool) -> dict[str, Any]:
        """A new token from WeChat, as a cache entry."""
        try:
            fetched = self.client.get_access_token(stable=stable)
        except Exception:
            metrics.ACCESS_TOKEN_FETCHES.labels(self.client.appid, "failed").inc()
            raise
        metrics.ACCESS_TOKEN_FETCHES.labels(self.client.appid, "ok").inc()
        log.info("fetched a new WeChat access_token for %s (expires in %d s)",
                 self.client.appid, fetched.expires_in)
        now = time.time()
        return {"token": fetched.token, "fetched_at": now, "expires_at": now + fetched.expires_in,
                "kind": "stable" if stable else "classic"}

    def invalidate(self, failed_token: str) -> bool:
        """Drop the cached token (this process's too) if it is still `failed_token`.
        Returns whether it was."""
        with self._own_lock:
            own = self._own is not None and self._own["token"] == failed_token
            if own:
                self._own = None
        try:
            raw, entry = self._cached()
            if entry is None or entry["token"] != failed_token:
                return own
            return self.store.delete(self.key, only_if_value=raw) or own
        except self.store.unavailable as exc:
            self._store_failed(exc)
            return own

    def call(self, api: Callable[[str], T]) -> T:
        """Run ``api(access_token)``; on 40001/42001 refresh once and retry once."""
        token = self.get()
        try:
            return api(token)
        except AccessTokenInvalid as exc:
            log.warning("WeChat refused the access_token (errcode %s): fetching again",
                        exc.errcode)
            self.invalidate(token)
            return api(self.get())

    def status(self) -> dict[str, Any] | None:
        """``{"kind", "age" (s), "expires_in" (s)}`` of the cached token, None when none;
        never the token itself. Raises the store's `unavailable` when it does not answer."""
        _, entry = self._cached()
        if entry is None:
            return None
        now = time.time()
        return {"kind": entry.get("kind", "stable"), "age": int(now - entry["fetched_at"]),
                "expires_in": int(entry["expires_at"] - now)}

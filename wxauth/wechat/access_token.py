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
    text values with TTLs in seconds, and a lock across workers."""

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str, ttl: float | None = None, *,
            only_if_absent: bool = False) -> bool: ...

    def delete(self, key: str, *, only_if_value: str | None = None) -> bool: ...

    def lock(self, name: str, timeout: float, wait: float) -> AbstractContextManager[None]: ...


class AccessTokenManager:
    """Cached access_token for one mini-program.

    Args:
        client: the app's WeChatClient.
        store: the shared store (a `TokenStore`: Redis in production).
        stable: getStableAccessToken (default) or the classic /cgi-bin/token.
        margin: seconds before WeChat's expiry at which the cached token is dropped.
        lock_timeout: seconds a fetch may hold the lock (it frees itself after).
        lock_wait: seconds to wait for another worker's fetch before giving up.
    """

    def __init__(self, client: WeChatClient, store: TokenStore, *, stable: bool = True,
                 margin: int = 300, lock_timeout: float = 15, lock_wait: float = 20):
        self.client = client
        self.store = store
        self.stable = stable
        self.margin = margin
        self.lock_timeout = lock_timeout
        self.lock_wait = lock_wait
        self.key = f"wechat:access_token:{client.appid}"

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
        (each fetch counted: `wxauth.metrics.ACCESS_TOKEN_FETCHES`).

        Raises:
            WeChatError subclasses from the fetch; the store's LockTimeout
            (`wxauth.infra.store.LockTimeout`) when another worker's fetch holds the lock for
            longer than `lock_wait`.
        """
        _, entry = self._cached()
        if entry:
            return entry["token"]
        with self.store.lock(self.key, timeout=self.lock_timeout, wait=self.lock_wait):
            _, entry = self._cached()  # another worker may have fetched while we waited
            if entry:
                return entry["token"]
            try:
                fetched = self.client.get_access_token(stable=self.stable)
            except Exception:
                metrics.ACCESS_TOKEN_FETCHES.labels(self.client.appid, "failed").inc()
                raise
            metrics.ACCESS_TOKEN_FETCHES.labels(self.client.appid, "ok").inc()
            now = time.time()
            ttl = max(1, fetched.expires_in - self.margin)
            self.store.set(self.key, json.dumps({
                "token": fetched.token, "fetched_at": now, "expires_at": now + fetched.expires_in,
                "kind": "stable" if self.stable else "classic"}), ttl)
            log.info("fetched a new WeChat access_token for %s (expires in %d s)",
                     self.client.appid, fetched.expires_in)
            return fetched.token

    def invalidate(self, failed_token: str) -> bool:
        """Drop the cached token if it is still `failed_token`. Returns whether it was."""
        raw, entry = self._cached()
        if entry is None or entry["token"] != failed_token:
            return False
        return self.store.delete(self.key, only_if_value=raw)

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
        never the token itself."""
        _, entry = self._cached()
        if entry is None:
            return None
        now = time.time()
        return {"kind": entry.get("kind", "stable"), "age": int(now - entry["fetched_at"]),
                "expires_in": int(entry["expires_at"] - now)}

"""State every worker and instance shares and may lose: the WeChat access_token cache and
its refresh lock, rate-limit counters (sessions and revocations live in the database).

One small interface, `SharedStore`, two backends:
- `RedisStore` (redis-py) when ``REDIS_URL`` is set — the production choice; one Redis, or
  the master Redis Sentinel names (``redis+sentinel://``, see `redis_pool`);
- `MemoryStore`, in-process, for development and a single process only (each gunicorn
  worker would have its own; `gunicorn.conf.py` warns when that happens).

Values are text; TTLs are seconds (float allowed). Keys get ``REDIS_PREFIX`` in Redis.
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit


class LockTimeout(Exception):
    """The lock could not be taken within the wait given."""

    retry_after = 2  # seconds


class StoreUnavailable(Exception):
    """The store (Redis) refused, timed out or failed; the message says how, never a value."""

    retry_after = 5  # seconds


class SharedStore:
    """Interface of the shared store (see the backends)."""

    backend = "abstract"
    unavailable = StoreUnavailable  # what the methods raise when the store fails

    def get(self, key: str) -> str | None:
        """The value, or None when absent or expired."""
        raise NotImplementedError

    def set(self, key: str, value: str, ttl: float | None = None, *,
            only_if_absent: bool = False) -> bool:
        """Store `value` for `ttl` seconds (forever when None). With `only_if_absent`, store
        only when no live value exists. Returns whether the value was stored."""
        raise NotImplementedError

    def delete(self, key: str, *, only_if_value: str | None = None) -> bool:
        """Remove the key (only when it holds `only_if_value`, if given). Returns whether
        something was removed."""
        raise NotImplementedError

    def incr(self, key: str, ttl: float) -> int:
        """Add 1 to a counter and return it; a new counter expires `ttl` seconds after its
        first increment (a fixed window)."""
        raise NotImplementedError

    @contextmanager
    def lock(self, name: str, timeout: float, wait: float) -> Iterator[None]:
        """Hold the named lock across all workers; it frees itself after `timeout` seconds
        even if its holder dies. Raises LockTimeout after waiting `wait` seconds."""
        raise NotImplementedError
        yield

    def ping(self) -> bool:
        """Whether the store answers."""
        raise NotImplementedError


class MemoryStore(SharedStore):
    """In-process store: a dict with expiry times, guarded by a lock."""

    backend = "memory"

    def __init__(self) -> None:
        self._data: dict[str, tuple[str, float | None]] = {}
        self._mutex = threading.Lock()

    def _live(self, key: str) -> str | None:
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= time.monotonic():
            del self._data[key]
            return None
        return value

    def get(self, key):
        with self._mutex:
            return self._live(key)

    def set(self, key, value, ttl=None, *, only_if_absent=False):
        with self._mutex:
            if only_if_absent and self._live(key) is not None:
                return False
            self._data[key] = (value, None if ttl is None else time.monotonic() + ttl)
            return True

    def delete(self, key, *, only_if_value=None):
        with self._mutex:
            current = self._live(key)
            if current is None or (only_if_value is not None and current != only_if_value):
                return False
            del self._data[key]
            return True

    def incr(self, key, ttl):
        with self._mutex:
            current = self._live(key)
            if current is None:
                self._data[key] = ("1", time.monotonic() + ttl)
                return 1
            count = int(current) + 1
            self._data[key] = (str(count), self._data[key][1])
            return count

    @contextmanager
    def lock(self, name, timeout, wait):
        token = uuid.uuid4().hex
        deadline = time.monotonic() + wait
        while not self.set(f"lock:{name}", token, timeout, only_if_absent=True):
            if time.monotonic() >= deadline:
                raise LockTimeout(name)
            time.sleep(0.01)
        try:
            yield
        finally:
            self.delete(f"lock:{name}", only_if_value=token)

    def ping(self):
        return True


SENTINEL_SCHEME = "redis+sentinel"


@dataclass(frozen=True)
class SentinelURL:
    """A ``redis+sentinel://`` URL taken apart (see `parse_sentinel_url`)."""

    sentinels: tuple[tuple[str, int], ...]  # (host, port) of each sentinel
    service_name: str  # the master's name in the sentinels' ``sentinel monitor``
    db: int
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)


def parse_sentinel_url(url: str) -> SentinelURL:
    """Take ``redis+sentinel://[[user]:password@]host:port[,host:port…]/service_name[/db]``
    apart: the form the `limits` library reads, plus an optional database number. The
    user and password (percent-escapes decoded) are used for the sentinels and the master
    alike, as `limits` does.

    Raises:
        ValueError: what is wrong, never quoting the password.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != SENTINEL_SCHEME:
        raise ValueError(f"not a {SENTINEL_SCHEME}:// URL")
    userinfo, _, rest = rest.rpartition("@")
    rest, _, query = rest.partition("?")
    if query:
        raise ValueError("takes no ?query")
    hosts, _, path = rest.partition("/")
    sentinels = []
    for location in hosts.split(","):
        parts = urlsplit(f"//{location.strip()}")
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            raise ValueError(f"sentinel address {location.strip()!r} is not host:port")
        sentinels.append((parts.hostname, port))
    service_name, _, db = path.strip("/").partition("/")
    if not service_name:
        raise ValueError("no service name after the sentinels' addresses")
    if db and not db.isdigit():
        raise ValueError(f"database {db!r} is not a number")
    username, colon, password = userinfo.partition(":")
    return SentinelURL(tuple(sentinels), unquote(service_name), int(db or 0),
                       unquote(username) or None,
                       unquote(password) if colon else None)


def redis_pool(url: str, *, timeout: float, max_connections: int, **options):
    """A redis-py connection pool for `url` that waits for a free connection (up to
    `timeout` seconds, then redis' ConnectionError) instead of failing at once: a gevent
    worker runs hundreds of requests at a time, more than connections are worth having.
    Each command is bounded by `timeout` (connecting, and waiting for the answer) and tried
    once more on a fresh connection (a restarted Redis is used again at once).

    `url` is redis-py's (``redis://``, ``rediss://``, ``unix://``) or ``redis+sentinel://``
    (`parse_sentinel_url`): then the pool's connections go to the master the sentinels name
    (redis-py's ``Sentinel.master_for``), asked again on every new connection, so a failover
    is followed without a restart; the sentinels are asked with the same `timeout`.
    """
    from redis import BlockingConnectionPool  # only when Redis is used (its weight)
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    bounded = dict(socket_timeout=timeout, socket_connect_timeout=timeout)
    settings = dict(max_connections=max_connections, timeout=timeout,
                    retry=Retry(NoBackoff(), 1), health_check_interval=30, **bounded, **options)
    if not url.lower().startswith(SENTINEL_SCHEME + "://"):
        return BlockingConnectionPool.from_url(url, **settings)

    from redis.sentinel import Sentinel

    parsed = parse_sentinel_url(url)
    auth = {name: value for name, value in (("username", parsed.username),
                                             ("password", parsed.password)) if value}
    # each sentinel asked once (the next one is the retry), within `timeout`
    sentinel = Sentinel(parsed.sentinels, sentinel_kwargs=dict(
        retry=Retry(NoBackoff(), 0), **bounded, **auth))
    return sentinel.master_for(parsed.service_name,
                               connection_pool_class=_blocking_sentinel_pool_class(),
                               db=parsed.db, **auth, **settings).connection_pool


@functools.cache
def _blocking_sentinel_pool_class() -> type:
    """redis-py's SentinelConnectionPool (connections to the current master) that waits for
    a free connection like its BlockingConnectionPool: both public classes, combined."""
    from redis import BlockingConnectionPool
    from redis.sentinel import SentinelConnectionPool

    return type("BlockingSentinelConnectionPool",
                (SentinelConnectionPool, BlockingConnectionPool), {})


class RedisStore(SharedStore):
    """Redis-backed store (redis-py); locks are redis-py's `Lock` (token-checked release).

    Commands are bounded by `socket_timeout` seconds (see `redis_pool`; at most
    `max_connections` per process); a failure raises StoreUnavailable, never redis-py's own
    exceptions.
    """

    backend = "redis"

    def __init__(self, url: str, prefix: str = "wxauth:", *, socket_timeout: float = 2.0,
                 max_connections: int = 100):
        import redis  # only when Redis is used: it weighs ~10 MB per worker

        self._errors = redis.exceptions
        self.prefix = prefix
        self.redis = redis.Redis(connection_pool=redis_pool(
            url, timeout=socket_timeout, max_connections=max_connections,
            decode_responses=True))

    def _k(self, key: str) -> str:
        return self.prefix + key

    @contextmanager
    def _errors_as_unavailable(self) -> Iterator[None]:
        try:
            yield
        except self._errors.LockError:
            raise
        except self._errors.RedisError as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}") from None

    def get(self, key):
        with self._errors_as_unavailable():
            return self.redis.get(self._k(key))

    def set(self, key, value, ttl=None, *, only_if_absent=False):
        px = None if ttl is None else max(1, int(ttl * 1000))
        with self._errors_as_unavailable():
            return bool(self.redis.set(self._k(key), value, px=px, nx=only_if_absent))

    def delete(self, key, *, only_if_value=None):
        with self._errors_as_unavailable():
            if only_if_value is None:
                return bool(self.redis.delete(self._k(key)))
            script = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
                      "return redis.call('del', KEYS[1]) else return 0 end")
            return bool(self.redis.eval(script, 1, self._k(key), only_if_value))

    def incr(self, key, ttl):
        with self._errors_as_unavailable(), self.redis.pipeline() as pipe:
            pipe.incr(self._k(key))  # MULTI: the counter never lives without a TTL
            pipe.expire(self._k(key), max(1, int(ttl + 0.999)), nx=True)
            count, _ = pipe.execute()
        return int(count)

    @contextmanager
    def lock(self, name, timeout, wait):
        lock = self.redis.lock(self._k(f"lock:{name}"), timeout=timeout, blocking_timeout=wait)
        with self._errors_as_unavailable():
            acquired = lock.acquire()
        if not acquired:
            raise LockTimeout(name)
        try:
            yield
        finally:
            try:
                lock.release()
            except self._errors.RedisError:
                pass  # expired while held (someone else may hold it now), or Redis is gone

    def ping(self):
        try:
            return bool(self.redis.ping())
        except self._errors.RedisError:
            return False


def create_store(redis_url: str | None, prefix: str = "wxauth:", *, timeout: float = 2.0,
                 max_connections: int = 100) -> SharedStore:
    """A RedisStore for `redis_url` (`timeout` in seconds), else a MemoryStore."""
    return (RedisStore(redis_url, prefix, socket_timeout=timeout,
                       max_connections=max_connections) if redis_url else MemoryStore())

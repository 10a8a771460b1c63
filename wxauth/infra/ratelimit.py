"""Fixed-window rate limits per client address (the login's ``LOGIN_RATE_LIMIT``, the
service clients' failed authentications ``CLIENT_AUTH_RATE_LIMIT``: `RateLimit.exhausted`
reads the counters without counting), and the book of the refusals they answer, counted in
Redis (shared by every worker and instance) or in this process.

`limits` parses the limits and names the counters; the counting is here, because limits 5.8
offers neither of the two things the login needs:

- **One round trip per hit with Redis.** limits' ``FixedWindowRateLimiter`` costs three per
  limit (the hit, then the window's count and TTL for the ``X-RateLimit-*`` headers). Here one
  Lua script (redis-py's ``register_script``: ``EVALSHA``) counts every limit, reads the
  windows, books a refusal and hands out the refusals of minutes that ended. Its counters are
  limits' own (``LIMITS:`` + ``RateLimitItem.key_for``, INCR then EXPIRE on the first hit), so
  workers of an older release share the budget during a rolling deploy.
- **No timer thread in a process.** limits' ``MemoryStorage`` starts a ``threading.Timer``
  on nearly every hit (~0.6 ms of CPU a login). `MemoryWindows` keeps the same fixed windows
  in a dict, dropping expired counters on a hit at most every `SWEEP_SECONDS`.

**Redis down.** A hit whose script fails (refused, timed out, any ``RedisError``) is counted
in this process instead (`MemoryWindows`, the same limits: with W workers on I instances a
client may get up to W × I times its budget while Redis is down), and ``STORE_FALLBACKS
{use="rate_limit"}`` counts it. The first failure logs one WARNING; Redis is tried again
`RECHECK_SECONDS` later (not on every hit: a silent Redis would hold every login for
``REDIS_TIMEOUT``), and the first success logs INFO "shared rate limit back". Both lines are
per process.

**The refusal book** (for the login log: one row per client address and minute, its
``count`` the refusals). A refusal adds one to its (address, minute) entry, in the store
that counted the hit. Once the minute has ended (plus `GRACE_SECONDS` for the workers'
clocks and the hits in flight) the entry is handed, once and to one caller, to the next hit
anywhere (``Verdict.closed``, at most `CLOSED_PER_HIT` at a time), whose caller writes it:
one write per address and minute. `RateLimit.flush` hands out every entry, the current
minute's too (a later refusal in that minute starts a new entry).
"""

from __future__ import annotations

import heapq
import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from limits import RateLimitItem, parse_many

from ..metrics import STORE_FALLBACKS

log = logging.getLogger(__name__)

RECHECK_SECONDS = 5.0  # while Redis fails, how often a hit tries it again (per process)
GRACE_SECONDS = 5  # after its minute, how long a refusal-book entry waits for late hits
CLOSED_PER_HIT = 20  # refusal-book entries handed out with one hit at most
BOOK_TTL = 2 * 86400  # seconds a refusal-book entry is kept in Redis when nobody takes it
SWEEP_SECONDS = 10.0  # MemoryWindows drops its expired counters this often at most
MINUTE_FORMAT = "%Y%m%d%H%M"


@dataclass(frozen=True)
class Window:
    """One limit's window after a hit: the limit, the hits it still allows (≥ 0) and when it
    ends (epoch seconds)."""

    limit: RateLimitItem
    remaining: int
    reset_at: float


@dataclass(frozen=True)
class Refusals:
    """The refusals of one client address in one minute (its start, UTC) and the User-Agent
    of the first."""

    address: str
    minute: datetime
    count: int
    user_agent: str | None


@dataclass(frozen=True)
class Verdict:
    """A hit's outcome: `allowed`; `window`: the limit that refused it, else the one with the
    fewest hits left; `closed`: refusal-book entries to write down now (see the module
    docstring), usually none."""

    allowed: bool
    window: Window
    closed: list[Refusals]


# (count, milliseconds to the window's end) of each limit counted, in order
_Counted = list[tuple[int, int]]
# a refusal-book entry as a backend hands it out: (minute/address member, count, user agent)
_Closed = list[tuple[str, int, str | None]]


class MemoryWindows:
    """Fixed windows and the refusal book in this process: dicts behind one lock, no
    thread. Counters of ended windows are dropped by a hit at most every `sweep_seconds`;
    ``len()``: the counters held."""

    def __init__(self, sweep_seconds: float = SWEEP_SECONDS) -> None:
        self.sweep_seconds = sweep_seconds
        self._counters: dict[str, list] = {}  # key → [count, end (monotonic s)]
        self._book: dict[str, list] = {}  # member → [count, user agent]
        self._due: list[tuple[float, str]] = []  # heap of (due at (epoch s), member)
        self._mutex = threading.Lock()
        self._swept = time.monotonic()

    def hit(self, counters: list[tuple[str, int, int]], member: str, due_at: float,
            user_agent: str | None, cutoff: float) -> tuple[int, _Counted, _Closed]:
        """Count one hit on `counters` ((key, amount, expiry s) each, stopping at the first
        exceeded: its 1-based index is returned, 0 when none was); book a refusal under
        `member`, due at `due_at`; hand out the entries due by `cutoff` (epoch s)."""
        now = time.monotonic()
        counted, refused = [], 0
        with self._mutex:
            if now - self._swept >= self.sweep_seconds:
                self._counters = {k: v for k, v in self._counters.items() if v[1] > now}
                self._swept = now
            for index, (key, amount, expiry) in enumerate(counters, 1):
                counter = self._counters.get(key)
                if counter is None or counter[1] <= now:
                    counter = self._counters[key] = [0, now + expiry]
                counter[0] += 1
                counted.append((counter[0], int(1000 * (counter[1] - now))))
                if counter[0] > amount:
                    refused = index
                    break
            if refused:
                self._book_refusal(member, due_at, user_agent)
            return refused, counted, self._take(cutoff)

    def peek(self, keys: list[str]) -> _Counted:
        """(count, milliseconds to the window's end) of each counter of `keys`, counting
        nothing: (0, 0) for a counter with no live window."""
        now = time.monotonic()
        with self._mutex:
            found = [self._counters.get(key) for key in keys]
            return [(c[0], int(1000 * (c[1] - now))) if c and c[1] > now else (0, 0)
                    for c in found]

    def __len__(self) -> int:
        return len(self._counters)

    def _book_refusal(self, member: str, due_at: float, user_agent: str | None) -> None:
        entry = self._book.get(member)
        if entry is None:
            self._book[member] = [1, user_agent]
            heapq.heappush(self._due, (due_at, member))
        else:
            entry[0] += 1

    def take(self, cutoff: float) -> _Closed:
        """The refusal-book entries due by `cutoff` (epoch s; ``math.inf``: every one),
        `CLOSED_PER_HIT` at most."""
        with self._mutex:
            return self._take(cutoff)

    def _take(self, cutoff: float) -> _Closed:
        closed = []
        while self._due and self._due[0][0] <= cutoff and len(closed) < CLOSED_PER_HIT:
            _, member = heapq.heappop(self._due)
            count, user_agent = self._book.pop(member)
            closed.append((member, count, user_agent))
        return closed


# KEYS: the k window counters, then the refusal book's due set (a sorted set of members).
# ARGV: k; each counter's amount and expiry (s); the book's key prefix, this hit's member,
# its due time, its User-Agent; the cutoff of the entries to hand out ("+inf": all); how many.
# Returns {exceeded counter (1-based; 0: none), {count, PTTL ms, …}, {member, count, UA, …}}.
HIT_SCRIPT = """
local k = tonumber(ARGV[1])
local due = KEYS[k + 1]
local book, member = ARGV[2 * k + 2], ARGV[2 * k + 3]
local counted, refused = {}, 0
for i = 1, k do
  local count = redis.call('INCR', KEYS[i])
  if count == 1 then redis.call('EXPIRE', KEYS[i], ARGV[2 * i + 1]) end
  counted[#counted + 1] = count
  counted[#counted + 1] = redis.call('PTTL', KEYS[i])
  if count > tonumber(ARGV[2 * i]) then
    refused = i
    break
  end
end
if refused > 0 and redis.call('HINCRBY', book .. member, 'n', 1) == 1 then
  redis.call('HSET', book .. member, 'ua', ARGV[2 * k + 5])
  redis.call('EXPIRE', book .. member, ARGV[2 * k + 8])
  redis.call('ZADD', due, ARGV[2 * k + 4], member)
end
local closed = {}
local members = redis.call('ZRANGEBYSCORE', due, '-inf', ARGV[2 * k + 6], 'LIMIT', 0,
                           ARGV[2 * k + 7])
for _, taken in ipairs(members) do
  local entry = redis.call('HMGET', book .. taken, 'n', 'ua')
  redis.call('DEL', book .. taken)
  redis.call('ZREM', due, taken)
  closed[#closed + 1] = taken
  closed[#closed + 1] = entry[1] or '0'
  closed[#closed + 1] = entry[2] or ''
end
return {refused, counted, closed}
"""


class RedisWindows:
    """Fixed windows and the refusal book in Redis: one script call (one round trip) per
    hit. Raises redis-py's ``RedisError`` (``errors``) when Redis fails."""

    def __init__(self, url: str, book_prefix: str, *, timeout: float, max_connections: int):
        import redis  # only when Redis is used (its weight)

        from .store import redis_pool

        self.errors = redis.RedisError
        self.book_prefix = book_prefix
        self.due_key = book_prefix + "due"
        client = redis.Redis(connection_pool=redis_pool(
            url, timeout=timeout, max_connections=max_connections, decode_responses=True))
        self._client = client
        self._script = client.register_script(HIT_SCRIPT)

    def peek(self, keys: list[str]) -> _Counted:
        """As `MemoryWindows.peek` (one round trip)."""
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
            pipe.pttl(key)
        found = pipe.execute()
        return [(int(found[i] or 0), int(found[i + 1])) if found[i] else (0, 0)
                for i in range(0, len(found), 2)]

    def hit(self, counters: list[tuple[str, int, int]], member: str, due_at: float,
            user_agent: str | None, cutoff: float | str) -> tuple[int, _Counted, _Closed]:
        """As `MemoryWindows.hit`."""
        args = [len(counters)]
        for _, amount, expiry in counters:
            args += [amount, expiry]
        args += [self.book_prefix, member, due_at, user_agent or "", cutoff, CLOSED_PER_HIT,
                 BOOK_TTL]
        refused, counted, closed = self._script(
            keys=[key for key, _, _ in counters] + [self.due_key], args=args)
        pairs = [(int(counted[i]), int(counted[i + 1])) for i in range(0, len(counted), 2)]
        return int(refused), pairs, [(closed[i], int(closed[i + 1]), closed[i + 2] or None)
                                     for i in range(0, len(closed), 3)]

    def take(self, cutoff: float) -> _Closed:
        """As `MemoryWindows.take`."""
        return self.hit([], "", 0, None, "+inf" if cutoff == math.inf else cutoff)[2]


class RateLimit:
    """Fixed-window limits for one kind of request, keyed by client address (see the
    module docstring).

    Args:
        limits: limits' notation, e.g. ``"60 per minute"`` or ``"10/second; 1000/day"``.
        storage_uri: ``redis://…``, ``rediss://…``, ``redis+unix://…``,
            ``redis+sentinel://…`` (shared) or ``memory://`` (this process).
        scope: names the counters: ``LIMITS:LIMITER/<key_prefix>/<address>/<scope>/…``.
        key_prefix: e.g. ``REDIS_PREFIX`` + ``"ratelimit"``.
        timeout: seconds to connect to Redis, per command and to wait for a connection.
        max_connections: Redis connections per process.

    Raises:
        ValueError: malformed `limits`.
    """

    def __init__(self, limits: str, storage_uri: str, scope: str, key_prefix: str = "",
                 timeout: float = 2.0, max_connections: int = 100):
        self.items = parse_many(limits)
        self.scope = scope
        self.key_prefix = key_prefix
        self.local = MemoryWindows()
        self.shared: RedisWindows | None = None
        if storage_uri.startswith(("redis://", "rediss://", "redis+unix://",
                                   "redis+sentinel://")):
            # redis+unix:// is limits' name for redis-py's unix://; redis_pool follows the
            # master a redis+sentinel:// URL's sentinels name
            self.shared = RedisWindows(storage_uri.replace("redis+unix://", "unix://", 1),
                                       f"{key_prefix}/{scope}/refused/", timeout=timeout,
                                       max_connections=max_connections)
        self._shared_failed = False
        self._shared_again_at = 0.0  # epoch s

    def hit(self, address: str, user_agent: str | None = None) -> Verdict:
        """Count one request from `address` (its `user_agent` is kept with a refusal).

        Returns:
            The verdict; never raises (Redis failing, the hit is counted in this process).
        """
        now = time.time()
        minute = int(now // 60) * 60
        member = (f"{datetime.fromtimestamp(minute, UTC):{MINUTE_FORMAT}}/{address}")
        counters = [(self._key(item, address), item.amount, item.get_expiry())
                    for item in self.items]
        args = (counters, member, minute + 60 + GRACE_SECONDS, user_agent, now)
        result = None
        if self.shared is not None and now >= self._shared_again_at:
            try:
                result = self.shared.hit(*args)
            except self.shared.errors as exc:
                if not self._shared_failed:
                    log.warning("rate limit: the shared store (Redis) failed (%s): counting "
                                "in this process until it answers", type(exc).__name__)
                self._shared_failed, self._shared_again_at = True, now + RECHECK_SECONDS
            else:
                if self._shared_failed:
                    log.info("shared rate limit back")
                    self._shared_failed = False
        if result is None:
            if self.shared is not None:
                STORE_FALLBACKS.labels("rate_limit").inc()
            result = self.local.hit(*args)
            closed = result[2]
        else:  # and what this process booked while Redis was down
            closed = result[2] + self.local.take(now)
        return self._verdict(now, *result[:2], closed)

    def exhausted(self, address: str) -> Window | None:
        """The window of a limit `address` has used up (no hit left: the next `hit` is
        refused), without counting anything; None while every limit allows one more hit.
        For limits that count failures only: ask before the attempt, `hit` after a failure.
        Never raises (Redis failing, this process's counters are read; `hit` logs it)."""
        now = time.time()
        keys = [self._key(item, address) for item in self.items]
        counted = None
        if self.shared is not None and now >= self._shared_again_at:
            try:
                counted = self.shared.peek(keys)
            except self.shared.errors:
                counted = None
        if counted is None:
            counted = self.local.peek(keys)
        return next((Window(item, 0, now + max(0, ms) / 1000)
                     for item, (count, ms) in zip(self.items, counted)
                     if count >= item.amount), None)

    def _key(self, item: RateLimitItem, address: str) -> str:
        """The counter of limit `item` for `address` (limits' own key)."""
        return f"LIMITS:{item.key_for(self.key_prefix, address, self.scope)}"

    def _verdict(self, now: float, refused: int, counted: _Counted,
                 closed: _Closed) -> Verdict:
        windows = [Window(item, max(0, item.amount - count), now + max(0, ms) / 1000)
                   for item, (count, ms) in zip(self.items, counted)]
        window = windows[refused - 1] if refused else min(windows, key=lambda w: w.remaining)
        return Verdict(not refused, window,
                       [_refusals(*entry) for entry in closed if entry[1]])

    def flush(self) -> list[Refusals]:
        """Every refusal-book entry not handed out yet, the current minute's too (Redis's,
        when it answers, and this process's)."""
        closed = _drain(self.local)
        if self.shared is not None:
            try:
                closed += _drain(self.shared)
            except self.shared.errors as exc:
                log.warning("rate limit: the refusal book in Redis was not read (%s)",
                            type(exc).__name__)
        return [_refusals(*entry) for entry in closed if entry[1]]


def _drain(windows: MemoryWindows | RedisWindows) -> _Closed:
    closed = []
    while True:
        taken = windows.take(math.inf)
        closed += taken
        if len(taken) < CLOSED_PER_HIT:
            return closed


def _refusals(member: str, count: int, user_agent: str | None) -> Refusals:
    minute, address = member.split("/", 1)
    return Refusals(address, datetime.strptime(minute, MINUTE_FORMAT).replace(tzinfo=UTC),
                    count, user_agent)

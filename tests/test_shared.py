"""The shared store, in-process and on real Redis; two store objects stand for two workers."""

import time

import pytest

from helpers import run_threads

from wxauth.infra.store import LockTimeout, MemoryStore, RedisStore


@pytest.fixture(params=["memory", "redis"])
def stores(request):
    """Two handles on one shared store (as two workers would have)."""
    if request.param == "memory":
        store = MemoryStore()
        return store, store
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_prefix")
    return RedisStore(url, prefix), RedisStore(url, prefix)


def test_set_get_delete(stores):
    a, b = stores
    assert a.get("k") is None
    assert a.set("k", "v1")
    assert b.get("k") == "v1"
    assert not b.set("k", "v2", only_if_absent=True)
    assert b.get("k") == "v1"
    assert not b.delete("k", only_if_value="other")
    assert b.delete("k", only_if_value="v1")
    assert a.get("k") is None and not a.delete("k")


def test_ttl_expires(stores):
    a, b = stores
    a.set("short", "x", ttl=0.2)
    assert b.get("short") == "x"
    time.sleep(0.35)
    assert b.get("short") is None
    assert b.set("short", "y", ttl=5, only_if_absent=True)


def test_counter_window(stores):
    a, b = stores
    assert [a.incr("hits", ttl=1), b.incr("hits", ttl=1), a.incr("hits", ttl=1)] == [1, 2, 3]
    time.sleep(1.2)
    assert b.incr("hits", ttl=1) == 1


def test_counter_under_concurrency(stores):
    a, b = stores
    def work(store):
        for _ in range(100):
            store.incr("many", ttl=30)
    run_threads(work, (a, b, a, b))
    assert a.incr("many", ttl=30) == 401


def test_lock_is_exclusive_across_handles(stores):
    a, b = stores
    inside, overlaps = [], []

    def worker(store):
        for _ in range(5):
            with store.lock("refresh", timeout=5, wait=10):
                inside.append(1)
                if len(inside) > 1:
                    overlaps.append(1)
                time.sleep(0.01)
                inside.pop()

    run_threads(worker, (a, b, a, b))
    assert overlaps == []


def test_lock_wait_times_out_and_lock_frees_itself(stores):
    a, b = stores
    with a.lock("held", timeout=0.5, wait=1):
        with pytest.raises(LockTimeout):
            with b.lock("held", timeout=5, wait=0.1):
                pass
    # a holder that dies never releases; the timeout frees the lock
    cm = a.lock("abandoned", timeout=0.3, wait=1)
    cm.__enter__()
    with b.lock("abandoned", timeout=5, wait=2):
        pass


def test_ping(stores):
    assert all(s.ping() for s in stores)


def test_unreachable_redis_pings_false():
    assert RedisStore("redis://127.0.0.1:9/0", socket_timeout=0.5).ping() is False

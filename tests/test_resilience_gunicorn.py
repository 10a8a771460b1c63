"""Real processes over real HTTP: gunicorn as shipped (gunicorn.conf.py's defaults: gevent
workers, 2 of them, no worker flags) in front of the WeChat emulator.

- A stalled WeChat holds the logins waiting on it, but neither `GET /profile` nor
  `/healthz` (which do not call WeChat) slow down, and no login ends in a 500.
- SIGTERM (a stop, a deploy) lets the logins in flight finish before the workers exit.
- SIGHUP (gunicorn's reload: new workers, the old ones stopped gracefully) under a steady
  load fails no request.

The clients use one connection per request (``Connection: close``), as gunicorn sees them
behind nginx configured as README's Production section says: ``proxy_pass`` without
``proxy_http_version 1.1`` and an upstream ``keepalive`` speaks HTTP/1.0 with
``Connection: close`` to gunicorn, whatever wx.request keeps alive towards nginx.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import requests

from helpers import Process, free_port, migrate

# Each test loads a 2-worker gunicorn with dozens of concurrent clients and times answers
# (under `make test`'s xdist: the three run one after another on one worker).
pytestmark = pytest.mark.xdist_group("gunicorn-under-load")

# Logins by the hundred from one address: the per-client login limit is not under test here.
LOGIN_LIMIT = "100000 per minute"
# One connection per request, closed by gunicorn after its answer, as nginx's proxy_pass
# does by default. (Without the header, requests.post/get leave the connection open until
# the Response is garbage-collected, and gunicorn keeps it for the next request.)
ONE_SHOT = {"Connection": "close"}


def start_gunicorn(env: dict[str, str], port: int | None = None, **settings: str) -> Process:
    """Migrate, then `gunicorn wsgi:app` with no worker flags: gunicorn.conf.py's defaults,
    bound by GUNICORN_BIND to `port` (default: a free one); `settings` are added to the
    environment."""
    migrate(env)
    return launch_gunicorn(env, port, **settings)


@contextlib.contextmanager
def two_instances(env: dict[str, str], tmp_path, port_a: int | None = None
                  ) -> Iterator[tuple[Process, Process]]:
    """Two gunicorn instances (`start_gunicorn`) on the database of `env`, migrated once,
    started at the same time (B with an instance folder of its own); stopped afterwards."""
    migrate(env)
    envs = [(env, port_a), (dict(env, WXAUTH_INSTANCE_PATH=str(tmp_path / "instance-b")), None)]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(launch_gunicorn, e, port) for e, port in envs]
    started = [f.result() for f in futures if f.exception() is None]
    try:
        for future in futures:
            if future.exception() is not None:
                raise future.exception()
        yield started[0], started[1]
    finally:
        for server in started:
            server.stop()


def launch_gunicorn(env: dict[str, str], port: int | None = None, **settings: str) -> Process:
    """`start_gunicorn` on a database migrated already."""
    port = port or free_port()
    env = dict(env, GUNICORN_BIND=f"127.0.0.1:{port}", LOGIN_RATE_LIMIT=LOGIN_LIMIT, **settings)
    server = Process(["gunicorn", "wsgi:app"], env, f"http://127.0.0.1:{port}")
    try:
        wait_for(lambda: len(worker_pids(server.proc.pid)) == 2, 30, "2 workers")
        assert "Using worker: gevent" in server.output(), server.output()
    except BaseException:
        server.stop()
        raise
    return server


def worker_pids(master: int) -> set[int]:
    """The master's children (its workers), from ``pgrep -P``."""
    found = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True)
    return {int(pid) for pid in found.stdout.split()}


def wait_for(condition, limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {limit} s"
        time.sleep(0.02)


def login(url: str, code: str, timeout: float = 30) -> requests.Response:
    return requests.post(url + "/auth/login", json={"code": code}, headers=ONE_SHOT,
                         timeout=timeout)


def get(url: str, path: str, token: str) -> requests.Response:
    return requests.get(url + path, headers={"Authorization": f"Bearer {token}", **ONE_SHOT},
                        timeout=30)


def assert_answered(response: requests.Response) -> None:
    """200, or a problem+json other than a 500: an error the client can act on."""
    if response.status_code == 200:
        return
    assert response.status_code != 500, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json"), response.text
    assert response.json()["code"], response.text


def test_a_stalled_wechat_does_not_slow_other_requests(production_env, emulator):
    """64 logins wait on a WeChat that does not answer, all at once in the 2 gevent workers
    (the emulator holds 64 calls). Meanwhile, and until they end, `GET /profile` and
    `/healthz` (at least 20 of each while all 64 are held) answer 200, each in under 1 s.
    The stalled logins end after WECHAT_TIMEOUT as problems (504 wechat_timeout; 503
    wechat_unavailable once the circuit is open), never a 500; once WeChat answers again
    (and the circuit's 1 s cool-down is over) logins succeed."""
    stalled, probes = 64, 20
    server = start_gunicorn(production_env, WECHAT_TIMEOUT="3", WECHAT_BREAKER_COOLDOWN="1")
    url = server.url
    results: list = [None] * stalled
    threads: list[threading.Thread] = []

    def all_held() -> bool:  # no login answered yet, and the emulator holds every one
        return (sum(t.is_alive() for t in threads) == stalled
                and emulator.emulator.faults()["pending"] >= stalled)

    timings: dict[str, list[float]] = {"/profile": [], "/healthz": []}
    while_held = 0  # probe rounds that began and ended with all logins held by WeChat
    try:
        first = login(url, emulator.mint("o-stall-first")["code"], timeout=10)
        assert first.status_code == 200, first.text
        token = first.json()["access_token"]
        codes = [emulator.mint()["code"] for _ in range(stalled)]

        def stalled_login(i: int) -> None:
            try:
                results[i] = login(url, codes[i], timeout=60)
            except requests.RequestException as exc:
                results[i] = exc

        threads += [threading.Thread(target=stalled_login, args=(i,)) for i in range(stalled)]
        emulator.emulator.set_faults(hang=True)  # (session-wide: undone in `finally`)
        try:
            for thread in threads:
                thread.start()
            fired = time.monotonic()
            wait_for(all_held, 2.5, f"{stalled} logins held by the emulator")
            started = time.monotonic()
            gathered = started - fired
            while (any(t.is_alive() for t in threads) or min(map(len, timings.values())) < probes):
                assert time.monotonic() - started < 30, "the stalled logins never ended"
                held_before = all_held()
                for path, times in timings.items():
                    begun = time.monotonic()
                    answer = get(url, path, token)
                    times.append(time.monotonic() - begun)
                    assert answer.status_code == 200, (path, answer.text)
                while_held += held_before and all_held()
            for thread in threads:
                thread.join()
        finally:
            emulator.emulator.set_faults(hang=False)

        slowest = {path: round(max(times), 3) for path, times in timings.items()}
        assert all(s < 1.0 for s in slowest.values()), slowest
        assert while_held >= probes, while_held
        for result in results:
            assert isinstance(result, requests.Response), repr(result)
            assert_answered(result)
        outcomes = Counter((r.status_code, r.json().get("code")) for r in results)
        assert set(outcomes) <= {(504, "wechat_timeout"), (503, "wechat_unavailable")}, outcomes

        # WeChat answers again: logins succeed (after the circuit's 1 s cool-down)
        deadline = time.monotonic() + 15
        succeeded = 0
        while succeeded < 4:
            answer = login(url, emulator.mint()["code"], timeout=10)
            if answer.status_code == 200:
                succeeded += 1
                continue
            assert (answer.status_code, answer.json()["code"]) == (503, "wechat_unavailable"), \
                answer.text
            assert time.monotonic() < deadline, "logins still fail 15 s after WeChat recovered"
            time.sleep(0.2)
        print(f"\nstalled WeChat: all {stalled} logins held {gathered:.2f} s after they were "
              f"sent; {len(timings['/profile'])} probe rounds "
              f"({while_held} with all {stalled} logins held), slowest {slowest}, "
              f"logins {dict(outcomes)}")
    finally:
        emulator.emulator.set_faults(hang=False)
        server.stop()
    assert "Traceback" not in server.output(), server.output()


def test_sigterm_lets_in_flight_logins_finish(production_env, emulator):
    """16 logins whose code2Session takes 2 s are in flight when the master gets SIGTERM:
    all 16 answer 200 with an access_token, and the master exits well within
    GUNICORN_GRACEFUL_TIMEOUT (20 s)."""
    count, graceful = 16, 20
    server = start_gunicorn(production_env, GUNICORN_GRACEFUL_TIMEOUT=str(graceful))
    results: list = [None] * count
    try:
        codes = [emulator.mint(delay=2)["code"] for _ in range(count)]

        def slow_login(i: int) -> None:
            try:
                results[i] = login(server.url, codes[i], timeout=60)
            except requests.RequestException as exc:
                results[i] = exc

        threads = [threading.Thread(target=slow_login, args=(i,)) for i in range(count)]
        for thread in threads:
            thread.start()
        # all 16 are in the workers, waiting on WeChat's 2 s
        wait_for(lambda: emulator.emulator.faults()["pending"] >= count, 1.8,
                 f"{count} calls at the emulator")
        os.kill(server.proc.pid, signal.SIGTERM)
        signalled = time.monotonic()
        server.proc.wait(graceful + 10)
        exited = time.monotonic() - signalled
        for thread in threads:
            thread.join(30)
    finally:
        server.stop()
    for result in results:
        assert isinstance(result, requests.Response), repr(result)
        assert result.status_code == 200, result.text
        assert result.json()["access_token"]
    assert exited < graceful, exited
    assert server.proc.returncode == 0, server.output()
    output = server.output()
    assert "Worker graceful timeout" not in output and "Traceback" not in output, output
    print(f"\nSIGTERM: master exited {exited:.2f} s after the signal")


def test_hup_reload_under_load_fails_no_request(production_env, emulator):
    """6 clients log in (fresh codes) and read their profile without pause for ~6 s; after
    3 s the master gets SIGHUP (new workers start, the old ones stop gracefully). No request
    fails (every answer 200, no connection error), and the workers are new ones."""
    server = start_gunicorn(production_env)
    clients, duration = 6, 6.0
    outcomes: list[tuple[float, str, object, float]] = []  # (when, path, status|error, seconds)
    lock = threading.Lock()
    stop = threading.Event()

    def record(path: str, call) -> requests.Response | None:
        started = time.monotonic()
        try:
            answer = call()
            outcome = answer.status_code
        except requests.RequestException as exc:
            answer, outcome = None, repr(exc)
        with lock:
            outcomes.append((started, path, outcome, time.monotonic() - started))
        return answer

    def client() -> None:
        while not stop.is_set():
            try:
                code = emulator.mint()["code"]
            except Exception as exc:  # (the emulator is not under test, but say so)
                with lock:
                    outcomes.append((time.monotonic(), "/dev/code", repr(exc), 0.0))
                continue
            answer = record("/auth/login", lambda: login(server.url, code))
            if answer is None or answer.status_code != 200:
                continue
            token = answer.json()["access_token"]
            record("/profile", lambda: get(server.url, "/profile", token))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    try:
        before = worker_pids(server.proc.pid)
        assert len(before) == 2
        started = time.monotonic()
        for thread in threads:
            thread.start()
        time.sleep(duration / 2)
        os.kill(server.proc.pid, signal.SIGHUP)
        hup = time.monotonic()
        time.sleep(duration / 2)
        stop.set()
        for thread in threads:
            thread.join(60)
        stopped = time.monotonic()
        # the old workers have left, two new ones serve
        wait_for(lambda: not (worker_pids(server.proc.pid) & before), 20, "old workers gone")
        wait_for(lambda: len(worker_pids(server.proc.pid)) == 2, 20, "2 new workers")
        after = worker_pids(server.proc.pid)
        output = server.output()
    finally:
        stop.set()
        server.stop()
    failed = [o for o in outcomes if o[2] != 200]
    assert not failed, failed[:10]
    assert after and not after & before, (before, after)
    assert "Hang up" in output, output
    assert "Worker graceful timeout" not in output and "Traceback" not in output, output
    before_hup = [o for o in outcomes if o[0] <= hup]
    after_hup = [o for o in outcomes if o[0] > hup]
    assert len(after_hup) >= 10, len(after_hup)  # the load went on across the reload
    print(f"\nSIGHUP: {len(outcomes)} requests in {stopped - started:.1f} s, none failed; "
          f"before the signal {len(before_hup)}, slowest {max(o[3] for o in before_hup):.2f} s; "
          f"after it {len(after_hup)}, slowest {max(o[3] for o in after_hup):.2f} s; "
          f"workers {sorted(before)} → {sorted(after)}")

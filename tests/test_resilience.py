"""Dependencies fail for real (tests/faults.py: a TCP relay, private Redis and PostgreSQL):
every endpoint answers a 503 problem with Retry-After within its timeouts, never a 500 or a
hang, logs one warning line and no traceback, and recovers by itself."""

from __future__ import annotations

import threading
import time

import flask_migrate
import pytest
import requests

import services
from faults import PrivatePostgres, PrivateRedis, Relay
from helpers import (FLASK_SECRET_KEY, APPID, ERASURE_KEY, JWT_KEY, SECRET, SESSION_KEY_ENCRYPTION_KEY, LiveServer, Process,
                     ServerClient, assert_problem, environment, free_port, run, run_threads, test_config)
from wxauth import create_app
from wxauth.extensions import db
from wxauth.state import state
from wxauth.wechat import client as wx


@pytest.fixture
def live(tmp_path, emulator, monkeypatch):
    """Start a live wxauth on loopback with settings of the test's own: ``live(**settings)``
    → ServerClient; the app is migrated first and torn down at the end."""
    monkeypatch.setenv("WXAUTH_INSTANCE_PATH", str(tmp_path / "instance"))
    started = []

    def start(**settings):
        app = create_app(test_config(tmp_path, emulator.url, **settings))
        with app.app_context():
            flask_migrate.upgrade()
        server = LiveServer(app)
        started.append((app, server))
        client = ServerClient(server.url, emulator)
        client.app = app
        return client

    yield start
    for app, server in started:
        server.stop()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def outage(response, status: int, code: str, *, within: float, took: float) -> dict:
    body = assert_problem(response, status, code)
    assert int(response.headers["Retry-After"]) >= 1
    assert took < within, f"{code} took {took:.2f} s (bound {within} s)"
    return body


def every_endpoint(server, body: dict, code: str | None = None) -> dict:
    """A call per kind of endpoint for a logged-in user (`body`: the login's answer)."""
    return {
        "login": lambda: server.post("/auth/login", json={"code": code or "x"}),
        "profile": lambda: server.get("/profile", token=body["access_token"]),
        "refresh": lambda: server.post("/auth/refresh", token=body["refresh_token"]),
        "logout": lambda: server.post("/auth/logout", token=body["access_token"]),
        "healthz": lambda: server.get("/healthz"),
    }


def timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def logged(capsys) -> str:
    """What was logged so far (the migrations' logging setup writes every record to stderr)."""
    return capsys.readouterr().err


def no_traceback(text: str) -> None:
    assert "Traceback" not in text, text


# --- WeChat -----------------------------------------------------------------------------------


def test_breaker_opens_after_failures_answers_503_at_once_then_probes(live, emulator, capsys):
    """WeChat refusing connections: each login fails fast with 502 wechat_unreachable until
    WECHAT_BREAKER_FAILURES in a row, then 503 wechat_unavailable with Retry-After at once,
    without calling WeChat; after the cool-down one probe goes through and closes it."""
    with Relay(emulator.url) as relay:
        server = live(WECHAT_API_BASE=relay.url_for(), WECHAT_BREAKER_FAILURES=3,
                      WECHAT_BREAKER_COOLDOWN=1.5)
        token = server.login("o-breaker")["access_token"]
        relay.mode = "refuse"
        for _ in range(3):
            response, took = timed(lambda: server.post("/auth/login", json={"code": "x"}))
            assert_problem(response, 502, "wechat_unreachable")
            assert took < 2
        accepted = relay.accepted
        response, took = timed(lambda: server.post("/auth/login", json={"code": "x"}))
        body = outage(response, 503, "wechat_unavailable", within=0.5, took=took)
        assert "circuit open" in body["detail"]
        assert state(server.app).guard.state == "open"
        # requests that do not call WeChat are not affected
        assert server.get("/profile", token=token).status_code == 200
        relay.mode = "pass"
        time.sleep(1.6)  # the cool-down: the next call is the probe
        assert server.login("o-breaker")["access_token"]
        assert state(server.app).guard.state == "closed"
        assert relay.accepted > accepted
    no_traceback(logged(capsys))


def test_errcodes_do_not_open_the_breaker(live):
    """WeChat answering errcodes (40029 here) is WeChat working: the circuit stays closed."""
    server = live(WECHAT_BREAKER_FAILURES=2)
    for _ in range(4):
        assert_problem(server.post("/auth/login", json={"code": "unknown"}), 400,
                       "invalid_code")
    assert state(server.app).guard.state == "closed"


def test_a_stalled_wechat_is_bounded_by_the_deadline(live, emulator):
    """WeChat accepting but never answering: the login answers 504 wechat_timeout within
    WECHAT_DEADLINE, the busy retries and a second connection attempt included."""
    with Relay(emulator.url) as relay:
        server = live(WECHAT_API_BASE=relay.url_for(), WECHAT_TIMEOUT=0.5, WECHAT_DEADLINE=1.0)
        relay.mode = "stall"
        response, took = timed(lambda: server.post("/auth/login", json={"code": "x"}))
        assert_problem(response, 504, "wechat_timeout")
        assert 0.4 < took < 2.0
        relay.mode = "pass"
        assert server.login("o-after-stall")["access_token"]


def test_calls_in_flight_are_bounded(emulator):
    """A call that finds every slot taken waits for one within its deadline, then gives up
    with WeChatUnavailable (503 wechat_unavailable, Retry-After 1)."""
    guard = wx.Guard(max_calls=1)
    client = wx.WeChatClient(APPID, SECRET, base_url=emulator.url, timeout=1, deadline=0.3,
                             guard=guard)
    assert guard.slots.acquire(timeout=1)  # another call holds the only slot
    try:
        started = time.monotonic()
        with pytest.raises(wx.WeChatUnavailable) as info:
            client.code2session(emulator.mint("o-slots")["code"])
        assert 0.25 < time.monotonic() - started < 1.0
        assert info.value.retry_after == 1
    finally:
        guard.slots.release()
    assert client.code2session(emulator.mint("o-slots")["code"]).openid == "o-slots"
    client.close()


# --- Redis --------------------------------------------------------------------------------------


@pytest.fixture
def redis_server():
    with PrivateRedis() as server:
        yield server


def test_redis_down_sessions_are_served_from_the_database(live, redis_server, capsys):
    """Redis killed: GET /profile, GET /auth/sessions, refresh and logout answer as usual (the
    database is the one truth for sessions), fast, with no traceback; a login too (under the
    per-process rate limit: tests/test_ratelimit.py); /healthz says degraded (200). A used
    refresh token and a logged-out token stay refused; Redis back: ok again."""
    server = live(REDIS_URL=redis_server.url, REDIS_TIMEOUT=1.0)
    body = server.login("o-redis")
    other = server.login("o-redis")
    redis_server.stop()  # SIGKILL
    for path in ("/profile", "/auth/sessions"):
        response, took = timed(lambda: server.get(path, token=body["access_token"]))
        assert response.status_code == 200 and took < 1.0, (path, response.text, took)
    response, took = timed(lambda: server.post("/auth/refresh", token=body["refresh_token"]))
    assert response.status_code == 200 and took < 1.0, response.text
    renewed = response.json()
    assert_problem(server.post("/auth/refresh", token=body["refresh_token"]), 401,
                   "token_revoked")  # reused: the session ends
    assert_problem(server.get("/profile", token=renewed["access_token"]), 401, "token_revoked")
    assert server.post("/auth/logout", token=other["access_token"]).status_code == 204
    assert_problem(server.get("/profile", token=other["access_token"]), 401, "token_revoked")
    assert server.login("o-redis-down")["access_token"]
    health = server.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "degraded"
    no_traceback(logged(capsys))
    redis_server.start()
    assert server.get("/healthz").json() == {"status": "ok", "store": "ok"}
    assert_problem(server.get("/profile", token=other["access_token"]), 401, "token_revoked")


def test_a_silent_redis_is_bounded_by_redis_timeout(live, redis_server):
    """Redis accepting connections but never answering: /healthz reports it after
    REDIS_TIMEOUT (one more try on a new connection included), not a hang; an authenticated
    request does not wait on Redis at all."""
    with Relay(redis_server.url) as relay:
        server = live(REDIS_URL=relay.rewrite(redis_server.url), REDIS_TIMEOUT=0.5)
        token = server.login("o-redis-stall")["access_token"]
        relay.mode = "stall"
        response, took = timed(lambda: server.get("/healthz"))
        assert response.json()["store"] == "unavailable" and took < 2.5, took
        response, took = timed(lambda: server.get("/profile", token=token))
        assert response.status_code == 200 and took < 0.5, took  # no Redis on this path
        relay.mode = "pass"
        relay.drop_connections()
        assert server.get("/profile", token=token).status_code == 200


# --- the database -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres():
    with PrivatePostgres() as server:
        yield server


def test_postgres_down_is_503_database_unavailable_then_recovers(live, postgres, capsys):
    """PostgreSQL refusing (behind a relay), then crashed and restarted: every endpoint
    answers 503 database_unavailable with Retry-After within DB_CONNECT_TIMEOUT, logs one
    warning line per request and no traceback; service resumes by itself."""
    with Relay(postgres.address) as relay:
        server = live(SQLALCHEMY_DATABASE_URI=relay.rewrite(postgres.url), DB_CONNECT_TIMEOUT=2)
        body = server.login("o-pg")
        token = body["access_token"]
        relay.mode = "refuse"
        relay.drop_connections()
        calls = every_endpoint(server, body, server.emulator.mint("o-pg")["code"])
        for call in calls.values():
            response, took = timed(call)
            outage(response, 503, "database_unavailable", within=3.0, took=took)
        text = logged(capsys)
        assert text.count("database unavailable") >= len(calls)
        no_traceback(text)

        relay.mode = "pass"
        assert server.get("/healthz").status_code == 200
        assert server.get("/profile", token=token).status_code == 200
        postgres.stop()  # crash; pooled connections die with it
        response, took = timed(lambda: server.get("/profile", token=token))
        outage(response, 503, "database_unavailable", within=3.0, took=took)
        postgres.start()
        assert server.get("/profile", token=token).status_code == 200
        assert server.login("o-pg")["access_token"]


def test_mariadb_database_dropped_fails_healthz(live):
    """MariaDB's database dropped under a running server: /healthz (which reads our own
    table) and GET /profile answer 503 database_unavailable, not ok / 500."""
    url = services.database_urls().get("mysql")
    if url is None:
        pytest.skip("no MariaDB/MySQL in TEST_DATABASE_URLS")
    problem = services.probe_database(url)
    if problem:
        pytest.skip(f"MariaDB does not answer: {problem}")
    scratch = services.ScratchDatabase(url).create()
    try:
        server = live(SQLALCHEMY_DATABASE_URI=scratch.url)
        token = server.login("o-dropped")["access_token"]
        assert server.get("/healthz").status_code == 200
        scratch.drop()
        for path in ("/healthz", "/profile"):
            response, took = timed(lambda: server.get(path, token=token))
            outage(response, 503, "database_unavailable", within=3.0, took=took)
    finally:
        scratch.drop()


def test_a_silent_postgres_answers_503_under_gunicorn(tmp_path, emulator, postgres):
    """PostgreSQL accepting connections but never answering, under the shipped
    gunicorn.conf.py (gevent workers): requests answer 503 database_unavailable within
    DB_STATEMENT_TIMEOUT (libpq has no client-side read timeout: infra.database bounds it),
    requests that need no database keep answering, and service resumes by itself."""
    with Relay(postgres.address) as relay:
        port = free_port()
        env = environment(tmp_path, WECHAT_APPID=APPID, WECHAT_SECRET=SECRET,
                          WECHAT_API_BASE=emulator.url, DATABASE_URL=relay.rewrite(postgres.url),
                          JWT_SECRET_KEY=JWT_KEY,
                          SESSION_KEY_ENCRYPTION_KEY=SESSION_KEY_ENCRYPTION_KEY,
                          ERASURE_KEY=ERASURE_KEY, SECRET_KEY=FLASK_SECRET_KEY,
                          DB_STATEMENT_TIMEOUT="1.5", DB_CONNECT_TIMEOUT="2",
                          GUNICORN_BIND=f"127.0.0.1:{port}")
        migrated = run(["flask", "--app", "wsgi", "db", "upgrade"], env)
        assert migrated.returncode == 0, migrated.stderr
        process = Process(["gunicorn", "wsgi:app"], env, f"http://127.0.0.1:{port}")
        try:
            client = ServerClient(process.url, emulator)
            token = client.login("o-silent")["access_token"]
            # warm both workers' pools: the pooled connections are the ones that go silent
            run_threads(lambda _: client.get("/profile", token=token), range(8))
            relay.mode = "stall"
            results = []

            def profile():
                try:
                    results.append(timed(lambda: client.get("/profile", token=token,
                                                             timeout=15)))
                except requests.RequestException as exc:  # no answer at all: a hang
                    results.append((exc, 15.0))

            threads = [threading.Thread(target=profile) for _ in range(4)]
            for thread in threads:
                thread.start()
            # meanwhile, a request without the database answers at once
            response, took = timed(lambda: requests.get(process.url + "/openapi.json", timeout=10))
            assert response.status_code == 200 and took < 1.0
            for thread in threads:
                thread.join()
            assert len(results) == len(threads)
            for response, took in results:
                assert isinstance(response, requests.Response), response
                outage(response, 503, "database_unavailable", within=6.0, took=took)
            relay.mode = "pass"
            deadline = time.monotonic() + 15
            while client.get("/profile", token=token).status_code != 200:
                assert time.monotonic() < deadline, "did not recover"
                time.sleep(0.5)
            output = process.output()
            assert "Traceback" not in output, output
            assert "database unavailable" in output
        finally:
            process.stop()

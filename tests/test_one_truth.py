"""The database is the one truth for a token's session (issue 22, point 1), over real
processes: two gunicorn instances (gevent workers, as shipped) on one database and a private
Redis that is killed and restarted empty (a failover to a replica that had not received the
last writes, or a restart without persistence, looks the same to us).

- Nothing a user was told is forgotten: a logged-out, kicked or limited session and a used
  refresh token stay refused after Redis comes back empty.
- Without Redis, /profile, /auth/sessions, refresh and logout answer as usual.
- Concurrent uses of one refresh token: exactly one wins (the conditional UPDATE).
- A session from before the upgrade (no refresh_jti): its access token works, its refresh
  token is refused (token_revoked), a new login works.
"""

from __future__ import annotations

import threading

import flask_migrate
import jwt
import pytest
import requests
import sqlalchemy as sa

import services
from faults import PrivateRedis
from helpers import assert_problem
from test_resilience_gunicorn import ONE_SHOT, two_instances as gunicorn_pair
from test_sessions_gunicorn import call, flask, log_in
from wxauth.extensions import db
from wxauth.models import LoginSession

pytestmark = pytest.mark.databases


@pytest.fixture
def database_env(production_env, database_backend):
    """production_env on the test's database (SQLite, or a scratch PostgreSQL/MariaDB, whose
    tables are dropped afterwards: the run's next test on it migrates it from scratch)."""
    if database_backend == "sqlite":
        yield production_env
        return
    yield dict(production_env, DATABASE_URL=database_backend.url)
    engine = sa.create_engine(database_backend.url)
    try:
        services.reset_schema(engine)
    finally:
        engine.dispose()


@pytest.fixture
def two_instances(database_env, tmp_path):
    """(env, url A, url B, the private Redis) — two gunicorn instances sharing the database
    and a private Redis."""
    with PrivateRedis() as redis_server:
        env = dict(database_env, REDIS_URL=redis_server.url, REDIS_TIMEOUT="0.5")
        with gunicorn_pair(env, tmp_path) as (a, b):
            yield env, a.url, b.url, redis_server


def test_two_instances_one_truth(two_instances, emulator):
    """The scenarios below on one pair of instances (starting gunicorn twice costs seconds)."""
    one_refresh_token_used_at_once_wins_once(two_instances, emulator)
    nothing_is_forgotten_when_redis_comes_back_empty(two_instances, emulator)


def nothing_is_forgotten_when_redis_comes_back_empty(two_instances, emulator):
    env, a, b, redis_server = two_instances
    openid = "o-one-truth"
    logged_out, kicked, rotated, live = (log_in(url, emulator, openid) for url in (a, b, a, b))
    assert call("POST", a, "/auth/logout", logged_out["access_token"]).status_code == 204
    kicked_id = call("GET", b, "/auth/sessions", kicked["access_token"]).json()["sessions"]
    kicked_id = next(s["id"] for s in kicked_id if s["current"])
    flask(env, "users", "kick", openid, "--session", kicked_id)
    renewed = call("POST", b, "/auth/refresh", rotated["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    renewed = renewed.json()

    def refused_everywhere() -> None:
        for url in (a, b):
            for body in (logged_out, kicked):
                assert_problem(call("GET", url, "/profile", body["access_token"]), 401,
                               "token_revoked")
                assert_problem(call("POST", url, "/auth/refresh", body["refresh_token"]), 401,
                               "token_revoked")

    refused_everywhere()
    redis_server.stop()  # SIGKILL: Redis is gone…
    for url in (a, b):  # …and nothing but the login needs it
        for path in ("/profile", "/auth/sessions"):
            response = call("GET", url, path, live["access_token"])
            assert response.status_code == 200, (url, path, response.text)
        health = requests.get(url + "/healthz", headers=ONE_SHOT, timeout=10)
        assert health.status_code == 200 and health.json()["status"] == "degraded"
    refused_everywhere()
    again = call("POST", a, "/auth/refresh", renewed["refresh_token"])
    assert again.status_code == 200, again.text
    redis_server.start()  # back, empty: no persistence
    refused_everywhere()
    for url in (a, b):  # the used refresh tokens stay used: the replay ends the session
        assert_problem(call("POST", url, "/auth/refresh", renewed["refresh_token"]), 401,
                       "token_revoked")
    assert_problem(call("GET", b, "/profile", again.json()["access_token"]), 401,
                   "token_revoked")
    assert call("GET", a, "/profile", live["access_token"]).status_code == 200
    assert call("POST", b, "/auth/logout", live["refresh_token"]).status_code == 204
    assert_problem(call("GET", a, "/profile", live["access_token"]), 401, "token_revoked")


def one_refresh_token_used_at_once_wins_once(two_instances, emulator):
    """20 concurrent refreshes of one token on two instances: one 200, the others 401
    token_revoked, and the session ends (reason ``reused``): a copied token is a theft."""
    env, a, b, _ = two_instances
    body = log_in(a, emulator, "o-race")
    results: list[requests.Response] = []
    start = threading.Barrier(20)

    def refresh(url: str) -> None:
        start.wait()
        results.append(call("POST", url, "/auth/refresh", body["refresh_token"]))

    threads = [threading.Thread(target=refresh, args=(a if i % 2 else b,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] + [401] * 19, statuses
    for response in results:
        if response.status_code == 401:
            assert_problem(response, 401, "token_revoked")
    winner = next(r.json() for r in results if r.status_code == 200)
    assert_problem(call("GET", a, "/profile", winner["access_token"]), 401, "token_revoked")
    engine = sa.create_engine(env["DATABASE_URL"])
    with engine.connect() as conn:
        reasons = conn.execute(sa.text("SELECT ended_reason FROM login_sessions")).scalars()
        assert list(reasons) == ["reused"]
    engine.dispose()


def test_a_session_from_before_the_upgrade(app, server):
    """Upgrading from the Redis-revocation release: the migration adds ``refresh_jti``
    (NULL for existing sessions). Their access tokens keep working until they expire; their
    refresh tokens are refused with token_revoked (the mini-program helper then logs in
    again with wx.login, silently); a new login rotates normally."""
    body = server.login("o-upgrade")
    with app.app_context():
        flask_migrate.downgrade(revision="7a3a598fb90e")  # the release before
        flask_migrate.upgrade()
        family = jwt.decode(body["access_token"], options={"verify_signature": False})["sid"]
        assert db.session.execute(sa.select(LoginSession.refresh_jti)
                                  .where(LoginSession.id == family)).scalar_one() is None
        db.session.remove()
    assert server.get("/profile", token=body["access_token"]).status_code == 200
    assert_problem(server.post("/auth/refresh", token=body["refresh_token"]), 401,
                   "token_revoked")
    assert server.get("/profile", token=body["access_token"]).status_code == 200  # not ended
    fresh = server.login("o-upgrade")
    pair = server.post("/auth/refresh", token=fresh["refresh_token"])
    assert pair.status_code == 200, pair.text

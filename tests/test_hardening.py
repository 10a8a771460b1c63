"""Abuse limits and shared revocation, over real HTTP (and real Redis where configured)."""

import redis
import requests

from helpers import Process, ServerClient, assert_problem, free_port, migrate, run


def test_login_rate_limit_per_client_address(app_config, request):
    app_config.update(LOGIN_RATE_LIMIT="3 per minute", TRUSTED_PROXIES="127.0.0.1")
    server = request.getfixturevalue("server")
    for _ in range(3):
        response = server.post("/auth/login", json={"code": "x"})
        assert response.status_code == 400 and response.headers["X-RateLimit-Limit"] == "3"
    response = server.post("/auth/login", json={"code": "x"})
    body = assert_problem(response, 429, "rate_limited")
    assert 0 < int(response.headers["Retry-After"]) <= 60
    assert "3 per 1 minute" in body["detail"]
    # another client behind the trusted proxy has its own budget
    other = {"X-Forwarded-For": "203.0.113.50"}
    assert server.post("/auth/login", json={"code": "x"}, headers=other).status_code == 400
    # the rest of the API is not limited
    healthz = server.get("/healthz")
    assert healthz.status_code == 200 and "X-RateLimit-Limit" not in healthz.headers


def test_spoofed_forwarded_for_does_not_escape_the_limit(app_config, request):
    app_config.update(LOGIN_RATE_LIMIT="2 per minute")  # no TRUSTED_PROXIES
    server = request.getfixturevalue("server")
    for i in range(2):
        server.post("/auth/login", json={"code": "x"}, headers={"X-Forwarded-For": f"10.0.0.{i}"})
    response = server.post("/auth/login", json={"code": "x"},
                           headers={"X-Forwarded-For": "10.0.0.99"})
    assert_problem(response, 429, "rate_limited")


def test_rate_limit_is_shared_by_workers_through_redis(production_env, redis_url, redis_prefix):
    """Two gunicorn workers, one budget: per-worker counters would let 6 through, not 3."""
    env = dict(production_env, REDIS_URL=redis_url, REDIS_PREFIX=redis_prefix,
               LOGIN_RATE_LIMIT="3 per minute")
    migrate(env)
    port = free_port()
    server = Process(["gunicorn", "-w", "2", "--threads", "1", "-b", f"127.0.0.1:{port}",
                      "wsgi:app"], env, f"http://127.0.0.1:{port}")
    try:
        statuses = [requests.post(server.url + "/auth/login", json={"code": "x"}, timeout=10,
                                  headers={"Connection": "close"}).status_code
                    for _ in range(8)]
        pids = server.output().count("Booting worker")
    finally:
        server.stop()
    assert pids == 2
    assert statuses == [400] * 3 + [429] * 5
    # limits' keys: "LIMITS:LIMITER/<REDIS_PREFIX>ratelimit/<address>/login/…"
    assert redis.Redis.from_url(redis_url).keys(f"*{redis_prefix}ratelimit/127.0.0.1/*")


def test_logout_is_seen_by_every_worker(production_env, redis_url, redis_prefix, emulator):
    env = dict(production_env, REDIS_URL=redis_url, REDIS_PREFIX=redis_prefix)
    migrate(env)
    port = free_port()
    server = Process(["gunicorn", "-w", "2", "--threads", "2", "-b", f"127.0.0.1:{port}",
                      "wsgi:app"], env, f"http://127.0.0.1:{port}")
    try:
        client = ServerClient(server.url, emulator)
        body = client.login("o-logout-everywhere")
        assert client.post("/auth/logout", token=body["access_token"]).status_code == 204
        for _ in range(12):  # new connections: both workers answer some
            fresh = requests.get(server.url + "/profile", timeout=10,
                                 headers={"Authorization": f"Bearer {body['access_token']}",
                                          "Connection": "close"})
            assert_problem(fresh, 401, "token_revoked")
    finally:
        server.stop()


def test_production_refuses_a_short_jwt_secret(production_env):
    env = dict(production_env, JWT_SECRET_KEY="short-secret")
    result = run(["flask", "--app", "wsgi", "users", "list"], env)
    assert result.returncode != 0
    assert "JWT_SECRET_KEY is shorter than 32 bytes" in result.stderr
    assert "short-secret" not in result.stderr


def test_no_cors_by_default(server):
    response = server.request("OPTIONS", "/auth/login",
                              headers={"Origin": "https://evil.example",
                                       "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in response.headers
    response = server.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_a_malformed_login_rate_limit_stops_startup(app_config):
    import pytest

    from config import ConfigError
    from wxauth import create_app

    with pytest.raises(ConfigError, match="LOGIN_RATE_LIMIT"):
        create_app({**app_config, "LOGIN_RATE_LIMIT": "lots per minute"})

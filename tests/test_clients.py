"""Service clients (issue 23, points 3, 4 and 6): ``flask clients add/list/remove``, HTTP
Basic client authentication (logged and rate-limited when it fails), RFC 7662 introspection
(``POST /oauth/introspect``) and WeChat's access_token for services
(``GET /oauth/wechat/access_token``), over real HTTP against tokens minted by real logins."""

from __future__ import annotations

import logging
import re
import time

import jwt
import pytest
import requests
import sqlalchemy as sa

from helpers import APPID, JWT_KEY, OTHER_APPID, assert_problem, claims_of, emulator_stats
from test_resilience_gunicorn import ONE_SHOT, two_instances
from test_sessions_gunicorn import call, flask, log_in
from wxauth.extensions import db
from wxauth.models import LoginSession, ServiceClient
from wxauth.redaction import redact
from wxauth.state import state

pytestmark = pytest.mark.databases

ISSUER = "https://api.example.com"
FIELDS = {"active", "sub", "appid", "sid", "jti", "exp", "iat", "iss", "token_type", "unionid",
          "account_id"}


@pytest.fixture
def app_config(app_config):
    app_config.update(API_BASE_URL=ISSUER, CLIENT_AUTH_RATE_LIMIT="1000 per minute")
    return app_config


def parse_added(output: str) -> tuple[str, str]:
    """(client_id, secret) from `clients add`'s output."""
    client_id = re.search(r"^client_id\s+(\S+)$", output, re.M).group(1)
    secret = re.search(r"^secret\s+(\S+)$", output, re.M).group(1)
    return client_id, secret


def add_client(runner, name: str, *scopes: str) -> tuple[str, str]:
    args = ["clients", "add", name]
    for scope in scopes:
        args += ["--scope", scope]
    result = runner.invoke(args=args)
    assert result.exit_code == 0, result.output
    return parse_added(result.output)


def introspect(server, credentials, token: str, **form) -> requests.Response:
    return server.post("/oauth/introspect", data={"token": token, **form}, auth=credentials)


def test_clients_add_list_remove(app, runner):
    result = runner.invoke(args=["clients", "add", "orders", "--scope", "introspect",
                                 "--scope", "wechat_token"])
    assert result.exit_code == 0, result.output
    client_id, secret = parse_added(result.output)
    assert result.output.count(secret) == 1 and len(secret) >= 40
    with app.app_context():
        row = db.session.execute(sa.select(ServiceClient)).scalar_one()
        assert row.client_id == client_id and row.name == "orders"
        assert row.secret_hash.startswith("$argon2id$") and secret not in row.secret_hash
        assert row.scope_list == ["introspect", "wechat_token"]
        secret_hash = row.secret_hash

    listed = runner.invoke(args=["clients", "list"])
    assert listed.exit_code == 0
    assert "orders" in listed.output and client_id in listed.output
    assert "introspect wechat_token" in listed.output
    assert secret not in listed.output and secret_hash not in listed.output
    assert "argon2" not in listed.output

    for args, message in (
            (["clients", "add", "bad", "--scope", "admin"], "'admin' is not one of"),
            (["clients", "add", "bad"], "Missing option '--scope'"),
            (["clients", "add", "orders", "--scope", "introspect"], "exists already"),
            (["clients", "add", "no spaces", "--scope", "introspect"], "letters, digits"),
            (["clients", "remove", "nobody"], "no client named 'nobody'")):
        refused = runner.invoke(args=args)
        assert refused.exit_code != 0 and message in refused.output, refused.output

    removed = runner.invoke(args=["clients", "remove", "orders"])
    assert removed.exit_code == 0 and client_id in removed.output
    assert "orders" not in runner.invoke(args=["clients", "list"]).output


def test_live_access_and_refresh_tokens(server, runner):
    credentials = add_client(runner, "gateway", "introspect")
    body = server.login("o-introspect", unionid="u-introspect")
    sessions = server.get("/auth/sessions", token=body["access_token"]).json()["sessions"]
    user = server.get("/profile", token=body["access_token"]).json()
    for token, kind in ((body["access_token"], "access"), (body["refresh_token"], "refresh")):
        response = introspect(server, credentials, token, token_type_hint="access_token")
        assert response.status_code == 200, response.text
        assert response.headers["Cache-Control"] == "no-store"
        answer = response.json()
        claims = claims_of(token)
        assert answer == {"active": True, "sub": "o-introspect", "appid": claims["appid"],
                          "sid": sessions[0]["id"], "jti": claims["jti"],
                          "exp": claims["exp"], "iat": claims["iat"], "iss": ISSUER,
                          "token_type": kind, "unionid": "u-introspect",
                          "account_id": user["account_id"]}
        assert set(answer) == FIELDS

    no_union = server.login("o-no-unionid")
    answer = introspect(server, credentials, no_union["access_token"]).json()
    assert answer["active"] is True and answer["unionid"] is None


def resigned(token: str, key: str, **changes) -> str:
    claims = claims_of(token)
    return jwt.encode({**claims, **changes}, key, algorithm="HS256")


def test_tokens_not_live_are_inactive_and_nothing_else(app, server, runner):
    credentials = add_client(runner, "gateway", "introspect")
    live = server.login("o-inactive")
    now = int(time.time())
    crafted = [
        "not-a-jwt", "a.b.c",
        resigned(live["access_token"], JWT_KEY, iat=now - 7200, exp=now - 3600),  # expired
        resigned(live["access_token"], "another-key-" * 4),  # signed with another key
        resigned(live["access_token"], JWT_KEY, sid=["not", "text"]),  # malformed claim
    ]
    logged_out = server.login("o-inactive")
    assert server.post("/auth/logout", token=logged_out["access_token"]).status_code == 204
    kicked = server.login("o-inactive")
    kicked_id = next(s["id"] for s in server.get(
        "/auth/sessions", token=kicked["access_token"]).json()["sessions"] if s["current"])
    assert server.request("DELETE", f"/auth/sessions/{kicked_id}",
                          token=live["access_token"]).status_code == 204
    refreshed = server.post("/auth/refresh", token=live["refresh_token"])
    assert refreshed.status_code == 200  # the first refresh token is used up
    for token in crafted + [logged_out["access_token"], logged_out["refresh_token"],
                            kicked["access_token"], live["refresh_token"]]:
        response = introspect(server, credentials, token)
        assert response.status_code == 200, response.text
        assert response.json() == {"active": False}, token
        assert response.headers["Cache-Control"] == "no-store"

    fresh = refreshed.json()
    assert introspect(server, credentials, fresh["access_token"]).json()["active"] is True
    upgraded = server.login("o-inactive")  # a session from before refresh_jti existed
    with app.app_context():
        db.session.execute(sa.update(LoginSession).where(
            LoginSession.id == claims_of(upgraded["access_token"])["sid"]).values(refresh_jti=None))
        db.session.commit()
    assert introspect(server, credentials, upgraded["refresh_token"]).json() == {"active": False}
    assert introspect(server, credentials, upgraded["access_token"]).json()["active"] is True
    assert runner.invoke(args=["users", "disable", "o-inactive", "--reason", "abuse"]).exit_code == 0
    assert introspect(server, credentials, fresh["access_token"]).json() == {"active": False}
    assert runner.invoke(args=["users", "enable", "o-inactive"]).exit_code == 0
    again = server.login("o-inactive")
    assert introspect(server, credentials, again["access_token"]).json()["active"] is True
    assert runner.invoke(args=["users", "delete", "o-inactive", "--yes"]).exit_code == 0
    assert introspect(server, credentials, again["access_token"]).json() == {"active": False}

    missing = server.post("/oauth/introspect", data={}, auth=credentials)
    assert_problem(missing, 400, "invalid_request")


def test_client_authentication_failures_are_401_and_logged(server, runner, caplog):
    introspector = add_client(runner, "gateway", "introspect")
    token_only = add_client(runner, "pusher", "wechat_token")
    token = server.login("o-auth-failures")["access_token"]
    wrong_secret = (introspector[0], "wrong-" + introspector[1][6:])
    caplog.set_level(logging.WARNING, logger="wxauth.services.clients")
    for credentials, headers in ((wrong_secret, {}), (("svc_nobody", "whatever"), {}),
                                 (None, {}), (token_only, {}),
                                 (None, {"Authorization": f"Bearer {token}"}),
                                 (None, {"Authorization": "Basic !!not-base64"})):
        response = server.post("/oauth/introspect", data={"token": token}, auth=credentials,
                               headers=headers)
        assert_problem(response, 401, "invalid_client")
        assert response.headers["WWW-Authenticate"] == 'Basic realm="wxauth"'
        assert response.headers["Cache-Control"] == "no-store"
        assert "active" not in response.json()
    lines = [r.getMessage() for r in caplog.records if r.name == "wxauth.services.clients"]
    assert len(lines) == 6 and all(r.levelno == logging.WARNING for r in caplog.records
                                   if r.name == "wxauth.services.clients")
    assert f"wrong secret): client_id '{introspector[0]}' from 127.0.0.1" in lines[0]
    assert "unknown client): client_id 'svc_nobody'" in lines[1]
    assert "no credentials" in lines[2]
    assert f"no scope introspect): client_id '{token_only[0]}'" in lines[3]
    assert not any(introspector[1] in line or wrong_secret[1] in line or token_only[1] in line
                   for line in lines)
    # (the client authenticated successfully before is checked again on each call)
    assert introspect(server, introspector, token).json()["active"] is True
    assert runner.invoke(args=["clients", "remove", "gateway"]).exit_code == 0
    assert_problem(introspect(server, introspector, token), 401, "invalid_client")


@pytest.fixture(params=["memory", "redis"])
def strict_limit(request, app_config):
    """A limit of 3 failures a minute, counted in this process or in Redis (TEST_REDIS_URL)."""
    app_config["CLIENT_AUTH_RATE_LIMIT"] = "3 per minute"
    if request.param == "redis":
        app_config.update(REDIS_URL=request.getfixturevalue("redis_url"),
                          REDIS_PREFIX=request.getfixturevalue("redis_prefix"))
    return app_config


def test_only_failures_count_and_beyond_the_limit_429(strict_limit, server, runner):
    credentials = add_client(runner, "gateway", "introspect")
    token = server.login("o-limited")["access_token"]
    for _ in range(5):  # successes are not counted
        assert introspect(server, credentials, token).status_code == 200
    wrong = (credentials[0], "wrong-secret")
    for _ in range(2):
        assert_problem(introspect(server, wrong, token), 401, "invalid_client")
    third = introspect(server, wrong, token)  # uses the limit up
    assert_problem(third, 401, "invalid_client")
    for attempt in (wrong, credentials):  # refused before the secret is looked at
        refused = introspect(server, attempt, token)
        assert_problem(refused, 429, "rate_limited")
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert refused.headers["Cache-Control"] == "no-store"
    if strict_limit.get("REDIS_URL"):  # counted in Redis, shared by every worker
        import redis
        prefix = strict_limit["REDIS_PREFIX"]
        assert redis.Redis.from_url(strict_limit["REDIS_URL"]).keys(
            f"*{prefix}ratelimit/127.0.0.1/client_auth/*")


def test_redaction_hides_basic_credentials():
    line = 'Authorization: Basic c3ZjX2FiYzpzM2NyZXQ= "client_secret": "s3cret"'
    assert "c3ZjX2FiYzpzM2NyZXQ" not in redact(line) and "s3cret" not in redact(line)


def test_a_logout_shows_inactive_on_the_other_instance_at_once(production_env, emulator,
                                                                tmp_path):
    """Two gunicorn instances on one SQLite file: a logout, a kick and a disable on A (or by
    an operator) are inactive at B's next introspection. Access lines never show the
    client's credentials."""
    env = dict(production_env, GUNICORN_ACCESSLOG="-")
    with two_instances(env, tmp_path) as (a, b):
        credentials = parse_added(flask(env, "clients", "add", "gateway",
                                        "--scope", "introspect"))

        def active(url: str, token: str) -> bool:
            response = requests.post(url + "/oauth/introspect", data={"token": token},
                                     auth=credentials, headers=ONE_SHOT, timeout=30)
            assert response.status_code == 200, response.text
            return response.json()["active"]

        phone, tablet, laptop = (log_in(url, emulator, "o-two-introspect")
                                 for url in (a.url, b.url, a.url))
        assert all(active(url, body["access_token"]) for url in (a.url, b.url)
                   for body in (phone, tablet, laptop))
        assert call("POST", a.url, "/auth/logout", phone["access_token"]).status_code == 204
        assert not active(b.url, phone["access_token"])
        assert not active(b.url, phone["refresh_token"])
        tablet_id = call("GET", b.url, "/auth/sessions",
                         tablet["access_token"]).json()["sessions"]
        tablet_id = next(s["id"] for s in tablet_id if s["current"])
        flask(env, "users", "kick", "o-two-introspect", "--session", tablet_id)
        assert not active(a.url, tablet["access_token"])
        assert not active(b.url, tablet["access_token"])
        assert active(b.url, laptop["access_token"])
        flask(env, "users", "disable", "o-two-introspect", "--reason", "abuse")
        assert not active(a.url, laptop["access_token"])
        assert not active(b.url, laptop["access_token"])
    logs = a.output() + b.output()
    assert "/oauth/introspect" in logs  # (access lines were written)
    assert credentials[1] not in logs and "Basic " not in logs


def test_wechat_access_token_for_services(app, server, runner, emulator, caplog):
    """Point 6: the token the server keeps, fetched once, never refreshed by force; scope
    wechat_token required; unknown_app; the token in no log line."""
    caplog.set_level(logging.DEBUG)
    pusher = add_client(runner, "pusher", "wechat_token")
    introspector = add_client(runner, "gateway", "introspect")

    def fetches() -> int:
        stats = emulator_stats(emulator.url)
        return stats["token_fetches"] + stats["stable_token_fetches"]

    before = fetches()
    first = server.get("/oauth/wechat/access_token", auth=pusher)
    assert first.status_code == 200, first.text
    assert first.headers["Cache-Control"] == "no-store"
    body = first.json()
    assert set(body) == {"access_token", "expires_in"} and 0 < body["expires_in"] <= 7200
    assert fetches() == before + 1  # none was cached in this fresh app
    with app.app_context():
        assert body["access_token"] == state(app).programs[APPID].tokens.get()
    for query in ({}, {"appid": APPID}):  # no fetch while one is cached
        again = server.get("/oauth/wechat/access_token", params=query, auth=pusher)
        assert again.json()["access_token"] == body["access_token"]
        assert again.json()["expires_in"] <= body["expires_in"]
    assert fetches() == before + 1

    refused = server.get("/oauth/wechat/access_token", auth=introspector)
    assert_problem(refused, 401, "invalid_client")
    assert refused.headers["WWW-Authenticate"] == 'Basic realm="wxauth"'
    assert_problem(server.get("/oauth/wechat/access_token"), 401, "invalid_client")
    assert_problem(server.get("/oauth/wechat/access_token", params={"appid": OTHER_APPID},
                              auth=pusher), 400, "unknown_app")
    assert body["access_token"] not in caplog.text

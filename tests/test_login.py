"""POST /auth/login over real HTTP: a live server calling the emulator on loopback."""

import logging
import socket
import threading

import jwt as pyjwt
import pytest
from sqlalchemy import func, select

from helpers import APPID, SECRET, assert_problem, claims_of, run_threads
from wxauth.extensions import db
from wxauth.models import User

pytestmark = pytest.mark.databases

PROFILE_KEYS = {"id", "account_id", "is_new_account", "nickname", "avatar_url", "gender", "country", "province", "city",
                "language", "phone_number", "pure_phone_number", "country_code", "created_at",
                "updated_at"}


def user_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(User))


def test_login_creates_user_and_returns_a_7_day_jwt(server, app):
    body = server.login("o-alice")
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token",
                         "is_new_user", "is_new_account", "user"}
    assert body["is_new_account"] is True
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 604800
    assert body["is_new_user"] is True
    assert set(body["user"]) == PROFILE_KEYS
    assert body["user"]["created_at"].endswith("+00:00")

    header = pyjwt.get_unverified_header(body["access_token"])
    assert header["alg"] == "ES256" and header["kid"]  # (test_keys.py verifies it)
    claims = claims_of(body["access_token"])
    assert claims["sub"] == "o-alice"
    assert claims["exp"] - claims["iat"] == 604800
    assert claims["appid"] == APPID

    with app.app_context():
        user = db.session.execute(select(User)).scalar_one()
        assert (user.appid, user.openid) == (APPID, "o-alice")
        assert user.session_key == server.emulator.session_key("o-alice")


def test_returning_user_gets_same_id_and_new_session_key(server, app):
    first = server.login("o-bob", unionid="u-bob")
    key1 = server.emulator.session_key("o-bob")
    second = server.login("o-bob")
    assert second["is_new_user"] is False
    assert second["user"]["id"] == first["user"]["id"]
    assert user_count(app) == 1
    with app.app_context():
        user = db.session.execute(select(User)).scalar_one()
        assert user.session_key == server.emulator.session_key("o-bob") != key1
        assert user.unionid == "u-bob"  # kept
        assert user.last_login_at >= user.created_at


@pytest.mark.parametrize("returning", [True, False])
def test_first_login_with_and_without_insert_returning(server, app, monkeypatch, returning):
    """The user upsert answers its row where the database has INSERT … RETURNING; without it
    (MySQL) a SELECT follows. Both give the same login."""
    with app.app_context():
        monkeypatch.setattr(db.engine.dialect, "insert_returning", returning)
    first = server.login("o-carol")
    assert first["is_new_user"] is True and first["is_new_account"] is True
    assert first["user"]["is_new_account"] is True and first["user"]["account_id"]
    again = server.login("o-carol")
    assert again["is_new_user"] is False and again["user"]["id"] == first["user"]["id"]
    assert user_count(app) == 1


def test_profile_with_the_token(server):
    token = server.login("o-carol")["access_token"]
    response = server.get("/profile", token=token)
    assert response.status_code == 200
    assert set(response.json()) == PROFILE_KEYS
    assert "session_key" not in response.text


@pytest.mark.parametrize("options,status,code,errcode", [
    ({"errcode": 40029}, 400, "invalid_code", 40029),
    ({"blocked": True}, 403, "user_blocked", 40226),
    ({"errcode": 45011}, 429, "wechat_rate_limited", 45011),
    ({"busy": 50}, 503, "wechat_busy", -1),
    ({"errcode": 40999}, 502, "wechat_bad_response", 40999),
    ({"fault": "html"}, 502, "wechat_bad_response", None),
    ({"fault": "http_500"}, 502, "wechat_bad_response", None),
    ({"delay": 3}, 504, "wechat_timeout", None),
])
def test_wechat_failures_map_to_problems_and_write_nothing(server, app, options, status, code,
                                                            errcode):
    minted = server.emulator.mint(**options)
    response = server.post("/auth/login", json={"code": minted["code"]})
    body = assert_problem(response, status, code)
    assert body.get("errcode") == errcode
    if code in ("wechat_rate_limited", "wechat_busy", "wechat_timeout"):
        assert int(response.headers["Retry-After"]) > 0
    assert SECRET not in response.text
    assert user_count(app) == 0


def test_used_and_unknown_codes(server, app):
    minted = server.emulator.mint("o-dave")
    assert server.post("/auth/login", json={"code": minted["code"]}).status_code == 200
    assert_problem(server.post("/auth/login", json={"code": minted["code"]}), 400, "code_used")
    assert_problem(server.post("/auth/login", json={"code": "not-a-code"}), 400, "invalid_code")
    assert user_count(app) == 1


def test_busy_once_is_retried_inside(server):
    body = server.login("o-busy-once", busy=1)
    assert body["is_new_user"] is True


@pytest.fixture
def dead_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_wechat(app_config, dead_port, request, caplog):
    app_config["WECHAT_API_BASE"] = f"http://127.0.0.1:{dead_port}"
    server = request.getfixturevalue("server")
    caplog.set_level(logging.DEBUG)
    response = server.post("/auth/login", json={"code": "abc"})
    assert_problem(response, 502, "wechat_unreachable")
    assert SECRET not in response.text
    assert SECRET not in caplog.text  # urllib3's retry warnings are redacted too


@pytest.mark.parametrize("body,kwargs", [
    (None, {"json": {}}),
    (None, {"json": {"code": 123}}),
    (None, {"json": {"code": ""}}),
    (None, {"json": {"code": "abc\x00"}}),
    (None, {"json": {"code": "abc\ud800"}}),  # an unpaired surrogate (sent as \ud800)
    (None, {"json": {"code": "x" * 129}}),
    (None, {"json": [1, 2]}),
    (None, {"json": "code"}),
    (None, {"data": "code=abc", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}),
    (None, {"data": "{not json", "headers": {"Content-Type": "application/json"}}),
    (None, {"data": b"\xff\xfe", "headers": {"Content-Type": "application/json"}}),
    (None, {"data": "[" * 5000 + "]" * 5000, "headers": {"Content-Type": "application/json"}}),
    # valid JSON, but more digits than Python turns into an int
    (None, {"data": '{"code": %s}' % ("9" * 5000), "headers": {"Content-Type": "application/json"}}),
])
def test_bad_input_is_400_invalid_request(server, app, body, kwargs):
    response = server.post("/auth/login", **kwargs)
    assert_problem(response, 400, "invalid_request")
    assert user_count(app) == 0


def test_oversized_body_is_413(server):
    response = server.post("/auth/login", json={"code": "x" * 100_000})
    assert_problem(response, 413, "payload_too_large")


def test_simultaneous_first_logins_make_one_user(server, app):
    codes = [server.emulator.mint("o-race")["code"] for _ in range(32)]
    barrier = threading.Barrier(len(codes))
    results = [None] * len(codes)

    def login(i):
        import requests
        barrier.wait()
        results[i] = requests.post(server.url + "/auth/login", json={"code": codes[i]},
                                   timeout=60)

    run_threads(login, range(len(codes)))
    assert [r.status_code for r in results] == [200] * 32, [r.text for r in results if r.status_code != 200]
    bodies = [r.json() for r in results]
    assert sum(b["is_new_user"] for b in bodies) == 1
    assert len({b["user"]["id"] for b in bodies}) == 1
    assert user_count(app) == 1

"""The production data layer on every database of the matrix: secrets at rest, key rotation,
the encrypting migration, emoji, pool resilience, multi-worker and multi-instance servers."""

from __future__ import annotations

import threading

import flask_migrate
import pytest
import requests
import sqlalchemy as sa
from cryptography.fernet import Fernet

from helpers import (FLASK_SECRET_KEY, APPID, ERASURE_KEY, JWT_KEY, SECRET, SESSION_KEY_ENCRYPTION_KEY, LiveServer, Process,
                     ServerClient, environment, free_port, run_threads)
from wxauth import create_app
from wxauth.extensions import db
from wxauth.infra.cipher import SessionKeyCipher

pytestmark = pytest.mark.databases

FIRST_REVISION = "59ec5be9765b"


def raw_rows(app) -> list[dict]:
    """The users table as a dump would show it."""
    with app.app_context():
        with db.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM users"))]


def test_session_key_is_encrypted_at_rest(server, app):
    server.login("o-secret")
    plain = server.emulator.session_key("o-secret")
    rows = raw_rows(app)
    assert len(rows) == 1
    dump = repr(rows)
    assert plain not in dump
    assert SessionKeyCipher.looks_encrypted(rows[0]["session_key"])
    cipher = SessionKeyCipher.from_keys(SESSION_KEY_ENCRYPTION_KEY)
    assert cipher.decrypt(rows[0]["session_key"]) == plain


def test_key_rotation_and_reencrypt_command(server, app, app_config, emulator):
    """Old rows decrypt after a new key is put first; `users reencrypt` moves them to it."""
    server.login("o-rotate")
    new_key = Fernet.generate_key().decode()
    rotated = create_app({**app_config,
                          "SESSION_KEY_ENCRYPTION_KEY": f"{new_key},{SESSION_KEY_ENCRYPTION_KEY}"})
    live = LiveServer(rotated)
    try:
        client = ServerClient(live.url, emulator)
        token = server.login("o-rotate-2")["access_token"]  # written under the old key
        detail = emulator.encrypt("o-rotate-2", {"nickName": "Rotated"})
        response = client.post("/profile", token=token, json=detail)
        assert response.status_code == 200, response.text  # decrypted with the old key

        result = rotated.test_cli_runner().invoke(args=["users", "reencrypt"])
        assert result.exit_code == 0, result.output
        assert "re-encrypted 2 session_keys and 1 signing keys" in result.output
        again = rotated.test_cli_runner().invoke(args=["users", "reencrypt"])
        assert "re-encrypted 0 session_keys and 0 signing keys" in again.output
        # the signing key, under the new key now, still signs
        assert client.get("/profile", token=client.login("o-rotate-3")["access_token"]
                          ).status_code == 200
    finally:
        live.stop()
    only_new = SessionKeyCipher.from_keys(new_key)
    for row in raw_rows(app):
        only_new.decrypt(row["session_key"])  # raises InvalidToken if still under the old key
    with app.app_context():
        for key in db.session.execute(sa.text("SELECT private_key FROM signing_keys")).scalars():
            only_new.decrypt(key)


def test_migration_encrypts_existing_plain_rows(app):
    with app.app_context():
        flask_migrate.downgrade(revision=FIRST_REVISION)
        with db.engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO users (appid, openid, session_key, gender, created_at, updated_at,"
                " last_login_at) VALUES (:a, 'o-legacy', 'AAAAAAAAAAAAAAAAAAAAAA==', 0,"
                " :t, :t, :t)"), {"a": APPID, "t": "2024-01-01 00:00:00"})
        flask_migrate.upgrade()
    (row,) = raw_rows(app)
    assert SessionKeyCipher.looks_encrypted(row["session_key"])
    with app.app_context():
        from wxauth.services.login import find_user
        assert find_user(APPID, "o-legacy").session_key == "AAAAAAAAAAAAAAAAAAAAAA=="
        db.session.remove()  # end the read transaction: ALTER TABLE waits for it otherwise
        flask_migrate.downgrade(revision=FIRST_REVISION)  # and back: plain again
    assert raw_rows(app)[0]["session_key"] == "AAAAAAAAAAAAAAAAAAAAAA=="


def test_emoji_and_cjk_round_trip(server, app):
    token = server.login("o-emoji")["access_token"]
    nickname = "🐱小猫 Ünïcødé 𠀀"
    assert server.patch("/profile", token=token, json={"nickname": nickname}).status_code == 200
    assert server.get("/profile", token=token).json()["nickname"] == nickname
    assert raw_rows(app)[0]["nickname"] == nickname


def test_pool_survives_connections_closed_by_the_server(server, app, database_backend):
    """Connections killed server-side (MySQL's wait_timeout, a failover) are replaced."""
    if database_backend == "sqlite":
        pytest.skip("no connection pool to a server")
    token = server.login("o-pool")["access_token"]
    with app.app_context():
        options = app.config["SQLALCHEMY_ENGINE_OPTIONS"]
        assert options["pool_pre_ping"] is True
        assert options["pool_recycle"] < 28800  # below MySQL's default wait_timeout
        assert db.engine.pool._recycle == options["pool_recycle"]
    assert database_backend.kill_connections() >= 1
    for _ in range(3):
        assert server.get("/profile", token=token).status_code == 200


def test_mysql_url_gets_utf8mb4(app_config, tmp_path):
    app_config["SQLALCHEMY_DATABASE_URI"] = "mysql+pymysql://root@127.0.0.1:1/none"
    app = create_app(app_config)
    assert "charset=utf8mb4" in app.config["SQLALCHEMY_DATABASE_URI"]


def _concurrent_first_logins(targets: list[tuple[str, str]]) -> list[requests.Response]:
    """POST /auth/login for every (server url, code) at the same moment."""
    barrier = threading.Barrier(len(targets))
    results: list = [None] * len(targets)

    def login(i: int) -> None:
        url, code = targets[i]
        barrier.wait()
        results[i] = requests.post(url + "/auth/login", json={"code": code}, timeout=60)

    run_threads(login, range(len(targets)))
    return results


def _production_env(tmp_path, emulator, database_url: str, **extra) -> dict[str, str]:
    return environment(tmp_path, WECHAT_APPID=APPID, WECHAT_SECRET=SECRET,
                       WECHAT_API_BASE=emulator.url, DATABASE_URL=database_url,
                       JWT_SECRET_KEY=JWT_KEY,
                       SESSION_KEY_ENCRYPTION_KEY=SESSION_KEY_ENCRYPTION_KEY,
                       ERASURE_KEY=ERASURE_KEY, SECRET_KEY=FLASK_SECRET_KEY, **extra)


def test_32_first_logins_through_a_multi_worker_gunicorn(app, emulator, tmp_path):
    """The `app` fixture migrated the database; gunicorn (2 workers × 4 threads) serves it."""
    database_url = app.config["SQLALCHEMY_DATABASE_URI"]
    env = _production_env(tmp_path, emulator, database_url)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = Process(["gunicorn", "-w", "2", "--threads", "4", "-b", f"127.0.0.1:{port}",
                      "wsgi:app"], env, url)
    try:
        results = _concurrent_first_logins(
            [(url, emulator.mint("o-mw-race")["code"]) for _ in range(32)])
    finally:
        server.stop()
    assert [r.status_code for r in results] == [200] * 32, server.output()[-2000:]
    assert sum(r.json()["is_new_user"] for r in results) == 1
    assert len({r.json()["user"]["id"] for r in results}) == 1
    assert len(raw_rows(app)) == 1


def test_two_instances_share_postgresql_and_redis(app, emulator, tmp_path, database_backend,
                                                 redis_url, redis_prefix):
    """Two gunicorn servers (2 workers each) on two ports, one database, one Redis."""
    if database_backend == "sqlite":
        pytest.skip("instances on several hosts share a database server")
    database_url = app.config["SQLALCHEMY_DATABASE_URI"]
    servers = []
    try:
        for name in ("a", "b"):
            env = _production_env(tmp_path / name, emulator, database_url,
                                  REDIS_URL=redis_url, REDIS_PREFIX=redis_prefix)
            (tmp_path / name).mkdir()
            port = free_port()
            servers.append(Process(["gunicorn", "-w", "2", "--threads", "4", "-b",
                                    f"127.0.0.1:{port}", "wsgi:app"], env,
                                   f"http://127.0.0.1:{port}"))
        a, b = (ServerClient(s.url, emulator) for s in servers)

        token = a.login("o-two")["access_token"]  # login on A…
        assert b.get("/profile", token=token).status_code == 200  # …valid on B
        assert b.patch("/profile", token=token, json={"nickname": "from B"}).status_code == 200
        assert a.get("/profile", token=token).json()["nickname"] == "from B"

        # the same person's first login reaches both instances at once, 16 times each
        results = _concurrent_first_logins(
            [(server.url, emulator.mint("o-two-race")["code"]) for server in (a, b) * 16])
    finally:
        for s in servers:
            s.stop()
    assert [r.status_code for r in results] == [200] * 32
    assert len([r for r in raw_rows(app) if r["openid"] == "o-two-race"]) == 1
    assert sum(r.json()["is_new_user"] for r in results) == 1

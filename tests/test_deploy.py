"""Real processes, as a user runs them: flask db upgrade, gunicorn with 2 workers in
production mode, the development server with its built-in emulator, and the fail-fast
production checks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time

import pytest
import requests
from sqlalchemy import create_engine, text

from helpers import ROOT, APPID, SECRET, Process, environment, free_port, run, run_threads

def test_gunicorn_two_workers_in_production_mode(production_env, emulator):
    upgrade = run(["flask", "--app", "wsgi", "db", "upgrade"], production_env)
    assert upgrade.returncode == 0, upgrade.stderr
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = Process(["gunicorn", "-w", "2", "--threads", "4", "-b", f"127.0.0.1:{port}",
                      "wsgi:app"], production_env, url)
    try:
        code = emulator.mint("o-gunicorn")["code"]
        login = requests.post(url + "/auth/login", json={"code": code}, timeout=10)
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        profile = requests.get(url + "/profile", headers={"Authorization": f"Bearer {token}"},
                               timeout=10)
        assert profile.status_code == 200

        # 32 simultaneous first logins of one openid across both workers
        codes = [emulator.mint("o-gunicorn-race")["code"] for _ in range(32)]
        barrier = threading.Barrier(32)
        results: list = [None] * 32

        def login_once(i: int) -> None:
            barrier.wait()
            results[i] = requests.post(url + "/auth/login", json={"code": codes[i]}, timeout=60)

        run_threads(login_once, range(32))
        assert [r.status_code for r in results] == [200] * 32
        assert sum(r.json()["is_new_user"] for r in results) == 1
        engine = create_engine(production_env["DATABASE_URL"])
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT count(*) FROM users WHERE openid = 'o-gunicorn-race'"))
            assert rows.scalar() == 1
        engine.dispose()

        bad = requests.post(url + "/auth/login", json={"code": "wrong"}, timeout=10)
        assert bad.status_code == 400
    finally:
        server.stop()
    assert SECRET not in server.output()
    # two workers and no REDIS_URL: each worker would keep its own shared state
    assert "2 workers and no REDIS_URL" in server.output()


@pytest.mark.parametrize("missing", ["WECHAT_APPID", "WECHAT_SECRET", "JWT_SECRET_KEY",
                                     "SESSION_KEY_ENCRYPTION_KEY", "ERASURE_KEY",
                                     "SECRET_KEY"])
def test_production_refuses_to_start_without(production_env, missing):
    # (JWT_SECRET_KEY is needed with HS256 only: ES256 keys live in the database)
    env = dict(production_env, JWT_ALGORITHM="HS256", **{missing: ""})
    result = run(["flask", "--app", "wsgi", "users", "list"], env)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if "configuration error" in line]
    assert len(lines) == 1 and missing in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stderr


def test_production_with_es256_needs_no_jwt_secret(production_env):
    env = dict(production_env, JWT_SECRET_KEY="")
    assert run(["flask", "--app", "wsgi", "db", "upgrade"], env).returncode == 0
    result = run(["flask", "--app", "wsgi", "keys", "list"], env)
    assert result.returncode == 0, result.stderr
    assert "JWT_ALGORITHM=ES256" in result.stdout


def test_gunicorn_stops_when_misconfigured(production_env):
    env = dict(production_env, JWT_ALGORITHM="HS256", JWT_SECRET_KEY="")
    port = free_port()
    result = run(["gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", "wsgi:app"], env)
    assert result.returncode != 0
    assert "JWT_SECRET_KEY is not set" in result.stderr


def test_development_server_with_builtin_emulator_like_the_readme(tmp_path):
    """make run's steps: db upgrade, flask run in debug mode, mint a code with the CLI, log in."""
    port = free_port()
    env = environment(tmp_path, FLASK_DEBUG="1", PORT=str(port))
    upgrade = run(["flask", "--app", "wsgi", "db", "upgrade"], env)
    assert upgrade.returncode == 0, upgrade.stderr
    assert "Running upgrade" in upgrade.stderr  # alembic says what it migrates…
    assert "setup plugin" not in upgrade.stderr  # …without its start-up chatter
    url = f"http://127.0.0.1:{port}"
    server = Process(["flask", "--app", "wsgi", "run", "--host", "127.0.0.1", "--port",
                      str(port)], env, url)
    try:
        minted = run(["flask", "--app", "wsgi", "wechat", "code", "alice"], env)
        assert minted.returncode == 0, minted.stderr
        code = minted.stdout.strip()
        login = requests.post(url + "/auth/login", json={"code": code}, timeout=10)
        assert login.status_code == 200, login.text
        assert login.json()["is_new_user"] is True
        token = login.json()["access_token"]

        detail = run(["flask", "--app", "wsgi", "wechat", "encrypt", "alice",
                      '{"nickName": "Alice", "gender": 2}'], env)
        assert detail.returncode == 0, detail.stderr
        updated = requests.post(url + "/profile", data=detail.stdout.strip(),
                                headers={"Authorization": f"Bearer {token}",
                                         "Content-Type": "application/json"}, timeout=10)
        assert updated.status_code == 200, updated.text
        assert updated.json()["nickname"] == "Alice"
    finally:
        server.stop()
    for name in ("session-key-encryption.key", "erasure.key"):  # (the JWT keys: the database)
        assert (tmp_path / "instance" / name).stat().st_mode & 0o777 == 0o600
    assert "ES256 signing key" in server.output()  # generated by the first login


def test_standalone_emulator(production_env, tmp_path):
    """`flask wechat emulator --port` accepts the configured app's credentials and the codes
    `flask wechat code` mints on it."""
    port = free_port()
    emulator_url = f"http://127.0.0.1:{port}"
    env = dict(production_env, WECHAT_API_BASE=emulator_url)
    emulator = Process(["flask", "--app", "wsgi", "wechat", "emulator", "--port", str(port)],
                       dict(env, WXAUTH_INSTANCE_PATH=str(tmp_path / "emu")), emulator_url,
                       ready=("GET", "/sns/jscode2session"))
    try:
        assert run(["flask", "--app", "wsgi", "db", "upgrade"], env).returncode == 0
        minted = run(["flask", "--app", "wsgi", "wechat", "code", "o-standalone"], env)
        assert minted.returncode == 0, minted.stderr
        from wxauth.wechat.client import WeChatClient
        client = WeChatClient(APPID, SECRET, base_url=emulator_url)
        assert client.code2session(minted.stdout.strip()).openid == "o-standalone"
    finally:
        emulator.stop()


def test_gunicorn_conf_reads_the_environment(production_env, redis_url):
    """No flags: bind, workers and threads come from gunicorn.conf.py's variables."""
    port = free_port()
    upgrade = run(["flask", "--app", "wsgi", "db", "upgrade"], production_env)
    assert upgrade.returncode == 0, upgrade.stderr
    env = dict(production_env, GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS="3",
               GUNICORN_THREADS="2", REDIS_URL=redis_url)
    server = Process(["gunicorn", "wsgi:app"], env, f"http://127.0.0.1:{port}")
    try:
        time.sleep(1)
        output = server.output()
    finally:
        server.stop()
    assert output.count("Booting worker") == 3, output
    assert "REDIS_URL" not in output  # no warning when the state is shared


def test_ci_fails_instead_of_skipping_when_a_service_is_down(tmp_path):
    # (the conftest is under test, not pytest's plugins: hypothesis', schemathesis' and
    # xdist's loading would take most of each run)
    env = dict(os.environ, CI="true", TEST_REDIS_URL="", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
               TEST_DATABASE_URLS=f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "tests/test_migrations.py"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "test services do not answer" in result.stdout + result.stderr
    env["CI"] = "false"
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "tests/test_migrations.py"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "skipped" in result.stdout


def test_gunicorn_refuses_development_mode_from_a_leftover_env_file(tmp_path, emulator):
    """A folder where `make run` once wrote .env (FLASK_DEBUG=1): gunicorn must not serve
    development mode (the emulator's /_wechat/dev/code logs anyone in as anyone). It stops
    with one line naming the cause; WXAUTH_ALLOW_DEVELOPMENT=1 is the documented override."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("config.py", "serving.py", "wsgi.py", "gunicorn.conf.py"):
        shutil.copy(ROOT / name, project)
    shutil.copytree(ROOT / "wxauth", project / "wxauth",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".env.example", project / ".env")  # what `make run` writes
    port = free_port()
    env = environment(tmp_path, GUNICORN_BIND=f"127.0.0.1:{port}")
    del env["FLASK_DEBUG"]  # as in a shell: only .env says anything about it
    result = subprocess.run([sys.executable, "-m", "gunicorn", "wsgi:app"], cwd=project, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "FLASK_DEBUG=1 from .env: development mode" in result.stderr, result.stderr
    assert "WXAUTH_ALLOW_DEVELOPMENT=1" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr

    env["WXAUTH_ALLOW_DEVELOPMENT"] = "1"  # a deliberate demo host: served, emulator and all
    url = f"http://127.0.0.1:{port}"
    server = Process(["gunicorn", "--chdir", str(project), "wsgi:app"], env, url,
                     ready=("GET", "/openapi.json"))  # (the database is not migrated)
    try:
        assert requests.post(url + "/_wechat/dev/code", json={}, timeout=10).status_code == 200
    finally:
        server.stop()

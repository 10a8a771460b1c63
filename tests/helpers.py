"""Test helpers: live servers on loopback, an emulator handle, an HTTP client, assertions."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import jwt
import requests
from cryptography.fernet import Fernet
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wsgi import ClosingIterator

from isolation import PROCESS_SETTINGS, SETTINGS
from wxauth.wechat.emulator import Emulator

APPID = "wx1234567890abcdef"
SECRET = "test-secret-" + secrets.token_hex(8)
OTHER_APPID = "wxfedcba0987654321"
OTHER_SECRET = "other-secret-" + secrets.token_hex(8)
JWT_KEY = secrets.token_urlsafe(48)
SESSION_KEY_ENCRYPTION_KEY = Fernet.generate_key().decode()
ERASURE_KEY = secrets.token_urlsafe(48)
FLASK_SECRET_KEY = secrets.token_urlsafe(48)  # SECRET_KEY: the support console's sessions


class _UnloggedRequests(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class LiveServer:
    """A WSGI app served on 127.0.0.1:<free port> from a background thread; with
    ``log_requests=False`` werkzeug writes no line per request."""

    POLL = 0.02  # seconds: how soon serve_forever sees stop() (its default 0.5 s is per test)
    DRAIN = 15  # seconds stop() waits at most for the requests still being answered

    def __init__(self, wsgi_app, *, log_requests: bool = True):
        self._in_flight = 0
        self._idle = threading.Condition()
        self._server = make_server("127.0.0.1", 0, self._counting(wsgi_app), threaded=True,
                                   request_handler=None if log_requests else _UnloggedRequests)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(self.POLL,),
                                        daemon=True)
        self._thread.start()

    def _counting(self, wsgi_app):
        """`wsgi_app`, counting the requests being answered (until their body is closed)."""
        def done() -> None:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

        def counted(environ, start_response):
            with self._idle:
                self._in_flight += 1
            try:
                return ClosingIterator(wsgi_app(environ, start_response), done)
            except BaseException:
                done()
                raise
        return counted

    def stop(self) -> None:
        """Stop accepting, then wait (DRAIN s at most) for the requests in flight: werkzeug's
        request threads are daemons nobody joins, and one a test left waiting (on a delayed
        WeChat answer, say) would otherwise write into the next test's tables."""
        self._server.shutdown()
        self._server.server_close()
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=self.DRAIN)


class EmulatorHandle:
    """The emulator's URL, plus its developer endpoints called over HTTP."""

    def __init__(self, emulator: Emulator, url: str):
        self.emulator = emulator
        self.url = url

    def mint(self, openid: str | None = None, **options: Any) -> dict[str, str]:
        body = {"openid": openid, **options} if openid else options
        response = requests.post(f"{self.url}/dev/code", json=body, timeout=5)
        response.raise_for_status()
        return response.json()

    def encrypt(self, openid: str, data: dict, **options: Any) -> dict[str, Any]:
        response = requests.post(f"{self.url}/dev/encrypt",
                                 json={"openid": openid, "data": data, **options}, timeout=5)
        response.raise_for_status()
        return response.json()

    def session_key(self, openid: str, appid: str = APPID) -> str:
        response = requests.get(f"{self.url}/dev/users/{openid}", params={"appid": appid},
                                timeout=5)
        response.raise_for_status()
        return response.json()["session_key"]


class ServerClient:
    """requests against a live wxauth server, with helpers for the login flow."""

    def __init__(self, url: str, emulator: EmulatorHandle):
        self.url = url
        self.emulator = emulator
        self.http = requests.Session()

    def request(self, method: str, path: str, token: str | None = None, **kwargs):
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        kwargs.setdefault("timeout", 30)
        return self.http.request(method, self.url + path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs):
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs):
        return self.request("PATCH", path, **kwargs)

    def login(self, openid: str | None = None, **mint_options: Any) -> dict[str, Any]:
        """Mint a code on the emulator and log in with it; returns the 200 body."""
        code = self.emulator.mint(openid, **mint_options)["code"]
        response = self.post("/auth/login", json={"code": code})
        assert response.status_code == 200, response.text
        return response.json()


def test_config(tmp_path, emulator_url: str, **overrides: Any) -> dict[str, Any]:
    return {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'test.db'}",
        "WECHAT_APPID": APPID,
        "WECHAT_SECRET": SECRET,
        "WECHAT_API_BASE": emulator_url,
        "WECHAT_TIMEOUT": 2.0,
        "LOGIN_RATE_LIMIT": "10000 per minute",
        "JWT_SECRET_KEY": JWT_KEY,
        "SESSION_KEY_ENCRYPTION_KEY": SESSION_KEY_ENCRYPTION_KEY,
        "ERASURE_KEY": ERASURE_KEY,
        **overrides,
    }


test_config.__test__ = False  # not a test, despite the name


def checkpoint(database: Path) -> None:
    """Move a closed SQLite file's write-ahead log into the file itself (to copy the file)."""
    conn = sqlite3.connect(database)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def copy_database(migrated: Path, target: Path) -> bool:
    """Copy the SQLite file `migrated` (checkpointed, e.g. conftest's `migrated_sqlite`) to
    `target`: a fresh database, already migrated. False (nothing copied) when `target`
    exists already."""
    if target.exists():
        return False
    shutil.copyfile(migrated, target)
    return True


# conftest's `migrated_sqlite` (the run's migrated SQLite file), once a test asked for it
MIGRATED_SQLITE: list[Path] = []


def migrate(env: dict[str, str]) -> None:
    """Bring the database of a process environment `env` to head before a server starts on
    it: a fresh SQLite file is a copy of `MIGRATED_SQLITE` (the same migrations, run once per
    worker: ``flask db upgrade`` costs a process start each time); any other database, or a
    test that did not ask for the template, runs ``flask db upgrade`` as an operator does
    (test_deploy.py and test_docs.py run it themselves: there the command is under test)."""
    url = env["DATABASE_URL"]
    if (MIGRATED_SQLITE and url.startswith("sqlite:///")
            and copy_database(MIGRATED_SQLITE[0], Path(url.removeprefix("sqlite:///")))):
        return
    upgrade = run(["flask", "--app", "wsgi", "db", "upgrade"], env)
    assert upgrade.returncode == 0, upgrade.stderr


def claims_of(token: str) -> dict[str, Any]:
    """The claims of one of the server's tokens, read without checking its signature (the
    signature's own tests are in test_keys.py: ES256 by default, verified with the key set)."""
    return jwt.decode(token, options={"verify_signature": False})


def assert_problem(response, status: int, code: str) -> dict[str, Any]:
    """Assert an RFC 9457 problem answer with this status and code; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"].endswith(code)
    assert body["title"] and body["detail"]
    return body


# --- real processes (flask CLI, gunicorn) ----------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
VARIABLES = SETTINGS


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_threads(target, args_each) -> None:
    """Run ``target(arg)`` for every arg of `args_each`, each in its own thread, all started
    before any is joined (to make them race); returns when all have finished."""
    threads = [threading.Thread(target=target, args=(arg,)) for arg in args_each]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def environment(tmp_path, **values: str) -> dict[str, str]:
    """A process environment with every wxauth variable set explicitly (so a developer's
    .env, which never overrides, cannot leak in); '' means unset."""
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES + PROCESS_SETTINGS}
    env.update({k: "" for k in VARIABLES})
    env.update(FLASK_DEBUG="0", WXAUTH_INSTANCE_PATH=str(tmp_path / "instance"))
    env.update(values)
    return env


def production_environment(tmp_path, emulator_url: str, database_url: str | None = None,
                           **values: str) -> dict[str, str]:
    """`environment` for a production-mode process (gunicorn, flask CLI) against the emulator
    at `emulator_url`, on `database_url` (default: SQLite in `tmp_path`); `values` are
    added."""
    return environment(tmp_path, WECHAT_APPID=APPID, WECHAT_SECRET=SECRET,
                       WECHAT_API_BASE=emulator_url,
                       DATABASE_URL=database_url or f"sqlite:///{tmp_path / 'prod.db'}",
                       JWT_SECRET_KEY=JWT_KEY, SESSION_KEY_ENCRYPTION_KEY=SESSION_KEY_ENCRYPTION_KEY,
                       ERASURE_KEY=ERASURE_KEY, SECRET_KEY=FLASK_SECRET_KEY, **values)


def run(args: list[str], env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, **kwargs)


class Process:
    def __init__(self, args: list[str], env: dict[str, str], url: str,
                 ready: tuple[str, str] = ("GET", "/healthz")):
        self.url = url
        self.log = open(env["WXAUTH_INSTANCE_PATH"] + ".log", "w+")
        self.proc = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.request(ready[0], url + ready[1], timeout=5).status_code < 500:
                    return
            except requests.RequestException:  # refused, or no worker up yet
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        raise AssertionError("server did not start:\n" + self.output())

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def emulator_post(emulator_url: str, path: str, body: dict | None = None) -> dict:
    response = requests.post(emulator_url + path, json=body or {}, timeout=10)
    response.raise_for_status()
    return response.json()


def emulator_stats(emulator_url: str) -> dict:
    response = requests.get(emulator_url + "/dev/stats", timeout=10)
    response.raise_for_status()
    return response.json()

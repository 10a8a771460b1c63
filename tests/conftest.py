"""Fixtures: a live WeChat emulator and a live wxauth server, both on loopback over real HTTP.

- `emulator` (session): the WeChat emulator WSGI app served on 127.0.0.1 by Werkzeug,
  accepting two mini-programs (APPID, OTHER_APPID).
- `app`: `create_app()` in testing mode on a fresh, Flask-Migrate-migrated database,
  pointed at the emulator. SQLite always (a copy of `migrated_sqlite`, the file that
  `flask_migrate.upgrade()` migrated once per run, as migrating each test's would be
  slow); in modules marked ``databases`` also each server of TEST_DATABASE_URLS
  (tests/services.py), in a scratch database of this run's own, migrated for each test.
- `redis_url`: TEST_REDIS_URL with a key prefix of this test's own (skips without it,
  fails under CI=true).
- `server`: that app served on 127.0.0.1 (threaded) and a small HTTP client for it.
- `client`, `runner`: Flask's test client and CLI runner, as in the Flask tutorial.

Under pytest-xdist (`make test` runs ``-n auto``) every worker process has its own session
fixtures (emulator, template database, scratch databases), temporary folders and ports.
"""

from __future__ import annotations

import isolation  # noqa: F401  (first: blanks the settings before config reads .env)
import logging
import os
from collections.abc import Iterator
from typing import Any

import secrets
from pathlib import Path

import flask_migrate
import pytest

import services
from helpers import (APPID, MIGRATED_SQLITE, OTHER_APPID, OTHER_SECRET, SECRET, EmulatorHandle,
                     LiveServer, ServerClient, checkpoint, copy_database,
                     production_environment, test_config)
from wxauth import create_app
from wxauth.extensions import db
from wxauth.state import state
from wxauth.wechat.emulator import Emulator

def pytest_configure(config):
    config.addinivalue_line("markers", "databases: run on SQLite and every TEST_DATABASE_URLS server")
    config.addinivalue_line("markers", "redis: needs TEST_REDIS_URL")
    config.addinivalue_line("markers", "xdist_group(name): under pytest-xdist's --dist "
                            "loadgroup, run on one worker with the rest of the group")


def pytest_collection_modifyitems(items):
    """Tests that start production processes (gunicorn, flask: the `production_env` fixture),
    the slowest, first (else in collection order): under xdist they spread over the workers
    instead of ending the run on one while the others wait."""
    items.sort(key=lambda item: "production_env" not in getattr(item, "fixturenames", ()))


def pytest_sessionstart(session):
    """Probe the optional services once; under CI=true a silent one stops the run."""
    session.config.wxauth_services = {}
    for label, url in services.database_urls().items():
        session.config.wxauth_services[label] = services.probe_database(url)
    if os.environ.get("TEST_REDIS_URL"):
        session.config.wxauth_services["redis"] = services.probe_redis(os.environ["TEST_REDIS_URL"])
    down = {k: v for k, v in session.config.wxauth_services.items() if v}
    if down and services.IN_CI:
        raise pytest.UsageError(f"CI=true and test services do not answer: {down}")


def pytest_generate_tests(metafunc):
    if "database_backend" in metafunc.fixturenames:
        backends = ["sqlite"]
        if metafunc.definition.get_closest_marker("databases"):
            backends += list(services.database_urls())
        metafunc.parametrize("database_backend", backends, indirect=True)


@pytest.fixture(autouse=True)
def no_closed_log_streams():
    """After each test, drop root handlers whose stream is closed: Flask-Migrate's
    migrations/env.py installs a console handler on the sys.stderr of the moment, capsys's
    when a test migrates in its body; later log lines (a server thread's) would fail on it."""
    yield
    root = logging.getLogger()
    for handler in root.handlers[:]:
        if isinstance(handler, logging.StreamHandler) and getattr(handler.stream, "closed", False):
            root.removeHandler(handler)


@pytest.fixture(scope="session")
def database_servers(request):
    """label → ScratchDatabase, created on first use, dropped at the end of the run."""
    created: dict[str, services.ScratchDatabase] = {}
    yield created
    for scratch in created.values():
        scratch.drop()


@pytest.fixture(scope="module")
def database_backend(request, database_servers):
    """'sqlite', or a ScratchDatabase on a server of TEST_DATABASE_URLS (module-scoped, so a
    module may keep one server process per backend)."""
    label = request.param
    if label == "sqlite":
        return label
    problem = request.config.wxauth_services.get(label)
    if problem:
        pytest.skip(f"{label} does not answer: {problem}")
    if label not in database_servers:
        database_servers[label] = services.ScratchDatabase(
            services.database_urls()[label]).create()
    return database_servers[label]


@pytest.fixture
def redis_url(request):
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        pytest.skip("TEST_REDIS_URL is not set")
    problem = request.config.wxauth_services.get("redis")
    if problem:
        pytest.skip(f"redis does not answer: {problem}")
    return url


@pytest.fixture
def redis_prefix():
    """A key prefix of this test's own; its keys are deleted afterwards."""
    import redis as redis_lib
    prefix = f"wxauth-test:{services.worker()}:{os.getpid()}:{secrets.token_hex(4)}:"
    yield prefix
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        client = redis_lib.Redis.from_url(url)
        keys = list(client.scan_iter(match=f"*{prefix}*"))  # limits adds its own in front
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorHandle]:
    emu = Emulator({APPID: SECRET, OTHER_APPID: OTHER_SECRET})
    # No request lines: they carry the secret (WeChat's API takes it in the query), and a
    # call a test left waiting (a delayed code) ends in the next test's captured logs.
    live = LiveServer(emu, log_requests=False)
    yield EmulatorHandle(emu, live.url)
    live.stop()


@pytest.fixture
def app_config(tmp_path, emulator, monkeypatch, database_backend) -> dict[str, Any]:
    """Settings for `app`; tests may change them before asking for `app`."""
    monkeypatch.setenv("WXAUTH_INSTANCE_PATH", str(tmp_path / "instance"))
    config = test_config(tmp_path, emulator.url)
    if database_backend != "sqlite":
        config["SQLALCHEMY_DATABASE_URI"] = database_backend.url
    return config


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory, emulator) -> Path:
    """A SQLite file that `flask_migrate.upgrade()` migrated to head, once per run (per
    xdist worker); `copy_database` gives a test its own copy. Read-only: copy it."""
    folder = tmp_path_factory.mktemp("migrated")
    root = logging.getLogger()
    saved = root.handlers[:], root.level  # alembic's env.py configures logging: undone
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WXAUTH_INSTANCE_PATH", str(folder / "instance"))
        template = create_app(test_config(folder, emulator.url))
        with template.app_context():
            flask_migrate.upgrade()
            db.engine.dispose()
    root.handlers[:], root.level = saved
    for program in state(template).programs.values():
        program.client.close()
    checkpoint(folder / "test.db")
    MIGRATED_SQLITE[:] = [folder / "test.db"]  # (for helpers.migrate)
    return folder / "test.db"


@pytest.fixture
def app(app_config, tmp_path, migrated_sqlite):
    fresh_sqlite = f"sqlite:///{tmp_path / 'test.db'}"
    copied = (app_config["SQLALCHEMY_DATABASE_URI"] == fresh_sqlite
              and copy_database(migrated_sqlite, tmp_path / "test.db"))
    app = create_app(app_config)
    if not copied:  # a server's scratch database, or a test's own SQLite file
        with app.app_context():
            flask_migrate.upgrade()
    yield app
    with app.app_context():
        db.session.remove()
        if db.engine.dialect.name != "sqlite":  # the scratch database is shared by the run
            services.reset_schema(db.engine)
        db.engine.dispose()
    for program in state(app).programs.values():
        program.client.close()


@pytest.fixture
def server(app, emulator) -> Iterator[ServerClient]:
    live = LiveServer(app)
    client = ServerClient(live.url, emulator)
    yield client
    client.http.close()
    live.stop()


@pytest.fixture
def production_env(tmp_path, emulator, migrated_sqlite):
    """Environment for a production-mode process (gunicorn, flask CLI) on SQLite (not
    migrated: `helpers.migrate` copies `migrated_sqlite` to it)."""
    return production_environment(tmp_path, emulator.url)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()

"""Fixtures: a live WeChat emulator and a live wxauth server, both on loopback over real HTTP.

- `emulator` (session): the WeChat emulator WSGI app served on 127.0.0.1 by Werkzeug,
  accepting two mini-programs (APPID, OTHER_APPID).
- `app`: `create_app()` in testing mode on a fresh SQLite file migrated by Flask-Migrate,
  pointed at the emulator.
- `server`: that app served on 127.0.0.1 (threaded) and a small HTTP client for it.
- `client`, `runner`: Flask's test client and CLI runner, as in the Flask tutorial.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import flask_migrate
import pytest

from helpers import (APPID, OTHER_APPID, OTHER_SECRET, SECRET, EmulatorHandle, LiveServer,
                     ServerClient, test_config)
from wxauth import create_app
from wxauth.extensions import db
from wxauth.wechat.emulator import Emulator

@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorHandle]:
    emu = Emulator({APPID: SECRET, OTHER_APPID: OTHER_SECRET})
    live = LiveServer(emu)
    yield EmulatorHandle(emu, live.url)
    live.stop()


@pytest.fixture
def app_config(tmp_path, emulator, monkeypatch) -> dict[str, Any]:
    """Settings for `app`; tests may change them before asking for `app`."""
    monkeypatch.setenv("WXAUTH_INSTANCE_PATH", str(tmp_path / "instance"))
    return test_config(tmp_path, emulator.url)


@pytest.fixture
def app(app_config):
    app = create_app(app_config)
    with app.app_context():
        flask_migrate.upgrade()
    yield app
    with app.app_context():
        db.engine.dispose()
    app.extensions["wechat"].close()


@pytest.fixture
def server(app, emulator) -> Iterator[ServerClient]:
    live = LiveServer(app)
    client = ServerClient(live.url, emulator)
    yield client
    client.http.close()
    live.stop()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()

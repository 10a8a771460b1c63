"""Issue 17 §2: every configuration problem at once, one line each naming the variable and
what to write; the common DATABASE_URL/REDIS_URL spellings; the appid's shape; gunicorn's
master and the flask CLI stopping with those lines, not a traceback."""

from __future__ import annotations

import re
import sys

import flask_migrate
import pytest
import redis as redis_lib
from sqlalchemy.engine import make_url

import config
import services
from config import APPID_SHAPE, ConfigError
from faults import PrivateRedis
from helpers import (FLASK_SECRET_KEY, APPID, ERASURE_KEY, JWT_KEY, ROOT, SECRET, SESSION_KEY_ENCRYPTION_KEY,
                     environment,
                     free_port, run)
from wxauth import create_app
from wxauth.extensions import db
from wxauth.models import User
from wxauth.state import state
from wxauth.wechat.emulator import DEFAULT_APPID

# (variable, bad value, what its line must say): one problem each, all given at once
BAD = [
    ("WECHAT_TIMEOUT", "5s", "write a plain number, no unit, e.g. WECHAT_TIMEOUT=5"),
    ("DB_POOL_SIZE", "-1", "must be a whole number >= 0"),
    ("WECHAT_APPID", "hello", "wx and 16 hex digits"),
    ("DATABASE_URL", "oracle://scott@db/wxauth", "not oracle"),
    ("REDIS_URL", "localhost:6379", "write REDIS_URL=redis://localhost:6379/0"),
    ("LOGIN_RATE_LIMIT", "lots per minute", "LOGIN_RATE_LIMIT='60 per minute'"),
    ("TRUSTED_PROXIES", "10.0.0.0/8,proxy", "e.g. TRUSTED_PROXIES=127.0.0.1,10.0.0.0/8"),
    ("LOG_FORMAT", "xml", "write one of text, json"),
    ("JWT_ALGORITHM", "ES512", "write one of ES256, RS256, EdDSA, HS256"),
    ("SESSION_KEY_ENCRYPTION_KEY", "", "SESSION_KEY_ENCRYPTION_KEY is not set"),
    ("SECRET_KEY", "", "SECRET_KEY is not set"),  # while the support console is on (default)
]


def problems_of(settings: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        create_app(settings)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def production(app_config: dict, **settings) -> dict:
    """app_config in production mode (no TESTING), with `settings` (DATABASE_URL given as
    the setting create_app reads it into)."""
    if "DATABASE_URL" in settings:
        settings["SQLALCHEMY_DATABASE_URI"] = settings.pop("DATABASE_URL")
    return {**app_config, "TESTING": False, **settings}


def test_every_problem_is_reported_at_once_one_line_each(app_config):
    problems = problems_of(production(app_config, **{name: value for name, value, _ in BAD}))
    assert len(problems) == len(BAD), problems
    for name, _, expected in BAD:
        lines = [line for line in problems if line.startswith(name)]
        assert len(lines) == 1 and expected in lines[0], (name, problems)
    assert all("\n" not in line for line in problems)


def test_a_malformed_number_in_the_environment_waits_for_complete(app_config, monkeypatch):
    """Reading the environment never raises (it happens at import): the text is kept and
    reported by complete() with the rest, unless a mapping overrides it."""
    monkeypatch.setenv("WECHAT_DEADLINE", "10 s")
    value = config.env_number("WECHAT_DEADLINE", 10.0)
    assert value == "10 s"
    problems = problems_of({**app_config, "WECHAT_DEADLINE": value, "LOG_LEVEL": "LOUD"})
    assert [line.split("=")[0] for line in problems] == ["WECHAT_DEADLINE", "LOG_LEVEL"]
    monkeypatch.setenv("WECHAT_DEADLINE", "7.5")
    assert config.env_number("WECHAT_DEADLINE", 10.0) == 7.5
    assert create_app({**app_config, "WECHAT_DEADLINE": "7.5"}).config["WECHAT_DEADLINE"] == 7.5


def test_secrets_are_never_in_the_report(app_config):
    problems = problems_of({**app_config,
                            "SQLALCHEMY_DATABASE_URI": "mysql+mysqldb://u:hunter2@db/wxauth",
                            "REDIS_URL": ":hunter2@redis.internal:6379"})
    assert len(problems) == 2 and "hunter2" not in "\n".join(problems), problems
    assert "write mysql+pymysql://u:***@db/wxauth" in problems[0]
    assert "write REDIS_URL=redis://:***@redis.internal:6379/0" in problems[1]


# --- real processes: gunicorn's master and the flask CLI ---------------------------------

@pytest.mark.parametrize("command", [["gunicorn", "wsgi:app"],
                                     ["flask", "--app", "wsgi", "users", "list"]])
def test_processes_stop_with_one_line_per_problem(tmp_path, command):
    """Before: the first malformed number raised at import (a traceback per worker), and
    gunicorn's master stopped on "Worker failed to boot". Now the master loads the app once
    in a child before it listens: every line once, no worker, no traceback, exit status 4,
    and no pid file left behind."""
    env = environment(tmp_path, WECHAT_SECRET=SECRET, JWT_SECRET_KEY=JWT_KEY,
                      SESSION_KEY_ENCRYPTION_KEY=SESSION_KEY_ENCRYPTION_KEY,
                      ERASURE_KEY=ERASURE_KEY, SECRET_KEY=FLASK_SECRET_KEY, GUNICORN_BIND=f"127.0.0.1:{free_port()}", GUNICORN_WORKERS="2",
                      **{name: value for name, value, _ in BAD[:6]})
    pidfile = tmp_path / "gunicorn.pid"
    if command[0] == "gunicorn":
        command = [*command[:1], "--pid", str(pidfile), *command[1:]]
    result = run(command, env)
    assert result.returncode == 4, result.stderr
    lines = [line for line in result.stderr.splitlines() if "configuration error" in line]
    assert len(lines) == 6, result.stderr
    for (name, _, expected), line in zip(BAD, lines):
        assert line.startswith(f"wxauth: configuration error: {name}") and expected in line
    for word in ("Traceback", "HaltServer", "Booting worker", "Worker failed", "Listening at"):
        assert word not in result.stderr, result.stderr
    assert not pidfile.exists()


def test_gunicorn_reports_its_own_malformed_numbers_too(production_env):
    env = dict(production_env, GUNICORN_WORKERS="two", WECHAT_BREAKER_COOLDOWN="30sec")
    result = run(["gunicorn", "-b", f"127.0.0.1:{free_port()}", "wsgi:app"], env)
    assert result.returncode == 4
    lines = [line for line in result.stderr.splitlines() if "configuration error" in line]
    assert [line.split(": ")[2].split("=")[0] for line in lines] == [
        "GUNICORN_WORKERS", "WECHAT_BREAKER_COOLDOWN"], result.stderr
    assert "Traceback" not in result.stderr


# --- DATABASE_URL ------------------------------------------------------------------------

@pytest.mark.parametrize("label,spelling", [("postgresql", "postgres"),
                                            ("postgresql", "postgresql"),
                                            ("mysql", "mysql"), ("mysql", "mariadb")])
def test_common_database_url_spellings_connect(app_config, database_servers, emulator, request,
                                               label, spelling):
    """postgres://, postgresql://, mysql:// and mariadb:// (no charset) log a user in on the
    real server of TEST_DATABASE_URLS, through psycopg 3 / PyMySQL with utf8mb4."""
    admin = services.database_urls().get(label)
    if admin is None:  # (under CI=true .ci/run sets both, and a silent one fails the run)
        pytest.skip(f"no {label} server in TEST_DATABASE_URLS")
    problem = request.config.wxauth_services.get(label)
    if problem:
        pytest.skip(f"{label} does not answer: {problem}")
    if label not in database_servers:
        database_servers[label] = services.ScratchDatabase(admin).create()
    spelled = make_url(database_servers[label].url).set(drivername=spelling, query={})
    app = create_app({**app_config,
                      "SQLALCHEMY_DATABASE_URI": spelled.render_as_string(hide_password=False)})
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    assert url.drivername == {"postgres": "postgresql+psycopg", "postgresql": "postgresql+psycopg",
                              "mysql": "mysql+pymysql", "mariadb": "mariadb+pymysql"}[spelling]
    if label == "mysql":
        assert url.query["charset"] == "utf8mb4"
    try:
        with app.app_context():
            flask_migrate.upgrade()
        code = emulator.mint("o-spelled", nickName="🐱")["code"]
        response = app.test_client().post("/auth/login", json={"code": code})
        assert response.status_code == 200, response.text
        with app.app_context():
            assert db.session.query(User).filter_by(openid="o-spelled").count() == 1
    finally:
        with app.app_context():
            db.session.remove()
            services.reset_schema(db.engine)
            db.engine.dispose()
        for program in state(app).programs.values():
            program.client.close()


@pytest.mark.parametrize("value,expected", [
    ("postgresql+psycopg2://u:pw@db/wxauth", "write postgresql+psycopg://u:***@db/wxauth"),
    ("mysql+mysqldb://root@db/wxauth", "write mysql+pymysql://root@db/wxauth"),
    ("oracle://scott@db/wxauth", "wxauth runs on PostgreSQL, MySQL/MariaDB or SQLite, not oracle"),
    ("db.internal:5432/wxauth", "is not a database URL: write e.g. postgresql://"),
    ("mysql://root@db/wxauth?charset=utf8", "write charset=utf8mb4"),
])
def test_database_url_says_what_to_write(app_config, value, expected):
    problems = problems_of({**app_config, "SQLALCHEMY_DATABASE_URI": value})
    assert len(problems) == 1 and problems[0].startswith("DATABASE_URL")
    assert expected in problems[0], problems


def test_a_driver_that_is_not_installed_is_named(app_config, tmp_path, monkeypatch):
    """psycopg missing from the virtualenv (a partial install): one line naming it."""
    (tmp_path / "psycopg.py").write_text("raise ImportError('not installed', name='psycopg')")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "psycopg", raising=False)
    problems = problems_of({**app_config, "SQLALCHEMY_DATABASE_URI": "postgres://db/wxauth"})
    assert problems == ["DATABASE_URL: postgresql+psycopg needs the psycopg package, which is "
                        "not installed: pip install -r requirements.txt"]


# --- REDIS_URL -----------------------------------------------------------------------------

@pytest.mark.parametrize("value,expected", [
    ("localhost:6379", "write REDIS_URL=redis://localhost:6379/0"),
    ("redis.internal", "write REDIS_URL=redis://redis.internal/0"),
    ("http://redis.internal:6379", "http:// is not Redis: write redis://host:6379/0"),
    ("redis://redis.internal:port/0", "Port could not be cast"),
    ("redis://redis.internal:6379/zero", "database 'zero' is not a number"),
])
def test_redis_url_says_what_to_write(app_config, value, expected):
    problems = problems_of({**app_config, "REDIS_URL": value})
    assert len(problems) == 1 and problems[0].startswith("REDIS_URL"), problems
    assert expected in problems[0], problems


def test_redis_over_a_unix_socket(app_config, emulator, tmp_path, redis_prefix):
    """unix:///path: the store and the login rate limit both count in that Redis."""
    socket_path = tmp_path / "redis.sock"
    with PrivateRedis(extra_args=("--unixsocket", str(socket_path),
                                  "--unixsocketperm", "700")):
        url = f"unix://{socket_path}?db=0"
        app = create_app({**app_config, "REDIS_URL": url, "REDIS_PREFIX": redis_prefix})
        assert app.config["RATELIMIT_STORAGE_URI"] == f"redis+unix://{socket_path}?db=0"
        with app.app_context():
            flask_migrate.upgrade()
        code = emulator.mint("o-unix")["code"]
        response = app.test_client().post("/auth/login", json={"code": code})
        assert response.status_code == 200, response.text
        assert "X-RateLimit-Remaining" in response.headers
        keys = redis_lib.Redis(unix_socket_path=str(socket_path)).keys("*")
        assert any(b"ratelimit" in key for key in keys), keys
        for program in state(app).programs.values():
            program.client.close()


# --- appids ----------------------------------------------------------------------------------

@pytest.mark.parametrize("appid,expected", [
    ("hello", "is not a mini-program appid (wx and 16 hex digits)"),
    ("wx1", "is not a mini-program appid"),
    ("wx00000000emulator", "is not a mini-program appid"),
    ("wx4f4bc4dec97d474bff", "is not a mini-program appid"),
    ("WX4F4BC4DEC97D474B", "must be lowercase, as WeChat writes it: write wx4f4bc4dec97d474b"),
])
def test_appid_shape_is_refused(app_config, appid, expected):
    problems = problems_of({**app_config, "WECHAT_APPID": appid})
    assert len(problems) == 1 and problems[0].startswith(f"WECHAT_APPID={appid!r} {expected}")
    apps = '{"%s": "s", "%s": "s"}' % (appid, APPID)
    problems = problems_of({**app_config, "WECHAT_APPS": apps})
    assert len(problems) == 1 and problems[0].startswith(f"WECHAT_APPS: appid {appid!r}")
    assert expected in problems[0]


def test_real_appids_are_accepted(app_config):
    app = create_app({**app_config, "WECHAT_APPID": "wx4f4bc4dec97d474b"})  # WeChat's sample
    assert list(state(app).programs) == ["wx4f4bc4dec97d474b"]


def test_the_projects_own_appids_have_the_shape():
    """The emulator's default app, the benchmark's and the README's examples."""
    bench = (ROOT / "bench" / "run.py").read_text() + (ROOT / "bench" / "access_token.py").read_text()
    readme = (ROOT / "README.md").read_text()
    appids = {DEFAULT_APPID, *re.findall(r'"(wx\w*)"', bench),
              *re.findall(r"\b(wx(?!auth)[0-9a-zA-Z]{6,})", readme)}
    assert len(appids) >= 4 and all(APPID_SHAPE.match(a) for a in appids), appids

"""Issue 22 §3: a DATABASE_URL naming several PostgreSQL hosts, in libpq's own form
(``postgresql://h1:5432,h2:5433/wxauth?target_session_attrs=read-write``), is accepted and
used as libpq would: the hosts in order, DB_CONNECT_TIMEOUT for each, the first read-write
one. Over real processes: gunicorn as shipped, the emulator, a relay standing for a host that
refuses or stalls, a read-only PostgreSQL of the test's own, and the real PostgreSQL of
TEST_DATABASE_URLS (in a scratch database)."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

import services
from config import ConfigError, database_url
from faults import PrivatePostgres, Relay
from test_resilience_gunicorn import login, start_gunicorn

CONNECT_TIMEOUT = 2  # DB_CONNECT_TIMEOUT in the gunicorn tests: seconds per host


# --- the URL ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value,host,port,query", [
    ("postgresql://wx:pw@db1:5432,db2:5433/wxauth?target_session_attrs=read-write",
     "db1,db2", "5432,5433", {"target_session_attrs": "read-write"}),
    ("postgres://wx@db1,db2:6432/wxauth", "db1,db2", ",6432", {}),
    ("postgresql+psycopg://wx@[::1]:5432,10.0.0.2/wxauth?connect_timeout=4",
     "::1,10.0.0.2", "5432,", {"connect_timeout": "4"}),
    ("postgresql://wx@db1,db2/wxauth", "db1,db2", None, {}),
])
def test_several_hosts_become_what_psycopg_takes(value, host, port, query):
    """libpq's form (which SQLAlchemy's URL parser refuses: "invalid literal for int()")
    becomes the psycopg dialect's host=/port= lists; user, password, database and libpq's
    own parameters are kept, and the dialect hands psycopg what libpq would have read."""
    url = database_url(value)
    assert url.drivername == "postgresql+psycopg"
    assert (url.username, url.database, url.host) == ("wx", "wxauth", None)
    assert url.query == {"host": host, **({"port": port} if port else {}), **query}
    _, connect = url.get_dialect()().create_connect_args(url)
    assert connect["host"] == host and connect["dbname"] == "wxauth"
    assert make_url(url.render_as_string(hide_password=False)) == url  # (as Flask-SQLAlchemy reads it)


def test_a_comma_in_the_password_is_not_a_host():
    for value in ("mysql://wx:pa,ss@db/wxauth", "postgresql://wx:pa,ss@db:5432/wxauth"):
        url = database_url(value)
        assert (url.password, url.host, url.query.get("host")) == ("pa,ss", "db", None)


@pytest.mark.parametrize("value,expected", [
    ("postgresql://wx:hunter2@db1:54x2,db2/wxauth", "port '54x2' is not a port number"),
    ("postgresql://wx:hunter2@db1:70000,db2/wxauth", "port '70000' is not a port number"),
    ("postgresql://wx:hunter2@db1,,db2/wxauth", "a host is empty"),
    ("postgresql://wx:hunter2@db1,db2/wxauth?colour=red", 'invalid URI query parameter: "colour"'),
    ("postgresql://wx:hunter2%zz@db1,db2/wxauth", 'invalid percent-encoded token: "***"'),
    ("postgresql://wx:hunter2@db1,db2/wxauth?host=db3", "names hosts both before the path"),
    ("mysql://wx:hunter2@db1,db2/wxauth", "several hosts are for PostgreSQL only"),
    ("postgresql+psycopg2://wx:hunter2@db1,db2/wxauth",
     "write postgresql+psycopg://wx:***@db1,db2/wxauth"),
])
def test_a_malformed_list_of_hosts_is_one_problem_without_the_password(app_config, value,
                                                                       expected):
    """Reported with the other configuration problems (one line, naming DATABASE_URL and
    what to write); the password is never shown, libpq's own messages included."""
    problems = _problems({**app_config, "SQLALCHEMY_DATABASE_URI": value, "LOG_LEVEL": "LOUD"})
    assert sorted(line.split("=")[0] for line in problems) == ["DATABASE_URL", "LOG_LEVEL"], problems
    problems.sort()
    assert expected in problems[0] and "hunter2" not in problems[0], problems[0]


def _problems(settings: dict) -> list[str]:
    from wxauth import create_app
    with pytest.raises(ConfigError) as info:
        create_app(settings)
    return info.value.problems


# --- real processes --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scratch(request):
    """A scratch database on the PostgreSQL of TEST_DATABASE_URLS (skips without one, fails
    under CI=true), dropped at the end of the module."""
    admin = services.database_urls().get("postgresql")
    problem = (services.probe_database(admin) if admin
               else "no postgresql server in TEST_DATABASE_URLS")
    if problem:
        if services.IN_CI:
            pytest.fail(f"CI=true and PostgreSQL does not answer: {problem}")
        pytest.skip(problem)
    database = services.ScratchDatabase(admin).create()
    yield database
    database.drop()


@pytest.fixture(scope="module")
def read_only(scratch):
    """A PostgreSQL of the test's own, with a database of the scratch database's name, whose
    sessions are read-only (as a standby's are): ``target_session_attrs=read-write``
    skips it."""
    with PrivatePostgres(database=scratch.name) as server:
        engine = sa.create_engine(server.url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{scratch.name}" SET '
                                 "default_transaction_read_only = on"))
        engine.dispose()
        yield server


def _users(url: str, openid: str) -> int | None:
    """Rows of `openid` in the users table at `url`; None when there is no such table."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if conn.execute(sa.text("SELECT to_regclass('users')")).scalar() is None:
                return None
            return conn.execute(sa.text("SELECT count(*) FROM users WHERE openid = :o"),
                                {"o": openid}).scalar()
    finally:
        engine.dispose()


@pytest.mark.parametrize("first", ["refuse", "stall"])
def test_logins_use_the_first_read_write_host(production_env, emulator, scratch, read_only,
                                              first):
    """DATABASE_URL names three hosts, libpq's way: one that refuses connections (or
    accepts and never answers), a read-only server, then the real PostgreSQL, with
    ``target_session_attrs=read-write``. The migration and gunicorn (gevent workers) use the
    real one: logins succeed, each request within DB_CONNECT_TIMEOUT of the stalled host
    plus a margin; the read-only server gets no table. Connections the server then ends are
    replaced through the same list at checkout (the ping), and logins go on."""
    real = make_url(scratch.url)
    with Relay((real.host, real.port), mode=first) as relay:
        hosts = f"127.0.0.1:{relay.port},127.0.0.1:{read_only.port},{real.host}:{real.port}"
        url = f"postgresql://{real.username}@{hosts}/{scratch.name}?target_session_attrs=read-write"
        server = start_gunicorn(dict(production_env, DATABASE_URL=url),
                                DB_CONNECT_TIMEOUT=str(CONNECT_TIMEOUT))
        try:
            took = []
            for round_ in ("fresh", "after the server ended the pooled connections"):
                if round_ != "fresh":
                    assert scratch.kill_connections() >= 1
                for i in range(4):  # (both workers, most likely)
                    openid = f"o-hosts-{first}-{len(took)}"
                    started = time.monotonic()
                    response = login(server.url, emulator.mint(openid)["code"])
                    took.append(round(time.monotonic() - started, 2))
                    assert response.status_code == 200, (round_, response.text)
                    assert _users(scratch.url, openid) == 1
        finally:
            server.stop()
        output = server.output()
        assert "Traceback" not in output, output
        assert max(took) < CONNECT_TIMEOUT + 2.0, took
        if first == "stall":
            assert relay.accepted >= 1  # it was tried first, and given up after its timeout
    assert _users(read_only.url, "o-hosts-refuse-0") is None  # no table: never written to
    print(f"\nfirst host {first}: logins took {took} s")

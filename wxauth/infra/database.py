"""The database engine's behaviour when the server is slow, silent or gone.

- SQLite: WAL journal and a busy timeout, so concurrent requests wait instead of failing.
- PostgreSQL and MariaDB/MySQL: a connection taken from the pool is pinged first
  (SQLAlchemy's ``pool_pre_ping``); a dead one is replaced, so a restarted server is used
  again without a restart of ours. MariaDB's driver (PyMySQL) bounds it, and every
  statement, with its socket timeouts (``read_timeout``, see config.py).
- PostgreSQL under gevent (``DB_CLIENT_DEADLINE``, decided in config.py): every statement
  runs under a deadline (`gevent.Timeout`), and so does the checkout ping, done here instead
  of SQLAlchemy's. libpq has no client-side read timeout, so without it a server that
  accepts connections but never answers would hold the request forever; the connection is
  closed and the statement fails as a disconnect (503 ``database_unavailable``). Outside
  gevent (threads, the development server) PostgreSQL's own ``statement_timeout`` and
  ``connect_timeout`` still apply.
- PostgreSQL with several hosts (config.py turns libpq's ``h1:5432,h2:5433`` into the
  dialect's ``host=``/``port=`` lists): psycopg tries them in order, ``connect_timeout``
  for each (a new connection waits at most hosts × ``DB_CONNECT_TIMEOUT``), and keeps the
  first that fits ``target_session_attrs``. Nothing here depends on the host: the deadline
  bounds what runs on the connection, and a connection that fails its checkout ping is
  replaced through the same list (tests/test_database_hosts.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from sqlalchemy import event, exc
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)


def tune(engine: Engine, deadline: float | None) -> None:
    """Install the behaviour above on `engine`; `deadline`: seconds for each statement and
    checkout ping (gevent only), None for none."""
    if engine.dialect.name == "sqlite":
        _tune_sqlite(engine)
        return
    if deadline is None:
        return
    dbapi_error = engine.dialect.loaded_dbapi.OperationalError

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection, _record, _proxy):
        try:
            with _deadline(deadline, dbapi_connection):
                cursor = dbapi_connection.cursor()
                try:
                    cursor.execute("SELECT 1")
                finally:
                    cursor.close()
        except Exception as error:  # the pool replaces it with a new connection (or fails)
            log.info("database connection dropped at checkout: %s", type(error).__name__)
            raise exc.InvalidatePoolError() from None  # (a DisconnectionError)

    @event.listens_for(engine, "do_execute")
    def _execute(cursor, statement, parameters, _context):
        try:
            with _deadline(deadline, cursor.connection):
                cursor.execute(statement, parameters)
        except _Timeout:
            raise dbapi_error(f"the database did not answer within {deadline} s") from None
        return True  # executed here


class _Timeout(Exception):
    pass


@contextlib.contextmanager
def _deadline(seconds: float, dbapi_connection) -> Iterator[None]:
    """Interrupt the block after `seconds` (gevent's Timeout) and close the connection it was
    waiting on, which the pool then treats as a disconnect."""
    import gevent

    timer = gevent.Timeout(seconds, _Timeout)
    timer.start()
    try:
        yield
    except _Timeout:
        with contextlib.suppress(Exception):
            dbapi_connection.close()
        raise
    finally:
        timer.close()


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        # WAL + NORMAL: no fsync per commit; a commit survives a crash of the process, only
        # an OS crash or power loss can lose the last ones (SQLite's recommended WAL setting).
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

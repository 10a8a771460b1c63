"""The database engine's behaviour when the server is slow, silent or gone.

- SQLite: WAL journal and a busy timeout, so concurrent requests wait instead of failing.
- PostgreSQL and MariaDB/MySQL: a connection taken from the pool is pinged first, within
  the statement deadline; a dead one is replaced (the pool retries with a new connection),
  so a restarted server is used again without a restart of ours.
- PostgreSQL under gevent: every statement, and that ping, runs under a deadline
  (`gevent.Timeout`). libpq has no client-side read timeout, so without it a server that
  accepts connections but never answers would hold the request forever; the connection is
  closed and the statement fails as a disconnect (503 ``database_unavailable``). MariaDB's
  driver (PyMySQL) has socket timeouts of its own (``read_timeout``, see config.py). Outside
  gevent (threads, the development server) PostgreSQL's own ``statement_timeout`` and
  ``connect_timeout`` still apply.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from sqlalchemy import event, exc
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)


def tune(engine: Engine, statement_timeout: float) -> None:
    """Install the behaviour above on `engine`; `statement_timeout` in seconds."""
    if engine.dialect.name == "sqlite":
        _tune_sqlite(engine)
        return
    postgres = engine.dialect.name == "postgresql"
    timeout = statement_timeout if postgres and _gevent_patched() else None
    dbapi_error = engine.dialect.loaded_dbapi.OperationalError

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection, _record, _proxy):
        try:
            with _deadline(timeout, dbapi_connection):
                cursor = dbapi_connection.cursor()
                try:
                    cursor.execute("SELECT 1")
                finally:
                    cursor.close()
        except Exception as error:  # the pool replaces it with a new connection (or fails)
            log.info("database connection dropped at checkout: %s", type(error).__name__)
            raise exc.InvalidatePoolError() from None  # (a DisconnectionError)

    if timeout is None:
        return

    @event.listens_for(engine, "do_execute")
    def _execute(cursor, statement, parameters, _context):
        try:
            with _deadline(timeout, cursor.connection):
                cursor.execute(statement, parameters)
        except _Timeout:
            raise dbapi_error(f"the database did not answer within {timeout} s") from None
        return True  # executed here


class _Timeout(Exception):
    pass


@contextlib.contextmanager
def _deadline(seconds: float | None, dbapi_connection) -> Iterator[None]:
    """Interrupt the block after `seconds` (gevent only; None: no deadline) and close the
    connection it was waiting on, which the pool then treats as a disconnect."""
    if seconds is None:
        yield
        return
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


def _gevent_patched() -> bool:
    try:
        from gevent import monkey
    except ImportError:
        return False
    return monkey.is_module_patched("socket")


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

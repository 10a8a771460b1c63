"""Database tuning applied to the engine at start-up."""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.engine import Engine


def tune_sqlite(engine: Engine) -> None:
    """WAL journal and a busy timeout, so concurrent requests wait instead of failing.
    Does nothing for other databases."""
    if engine.dialect.name != "sqlite":
        return

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

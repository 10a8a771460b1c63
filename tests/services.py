"""The optional test services: database servers from TEST_DATABASE_URLS and Redis from
TEST_REDIS_URL. Each is probed once; under CI=true a service that does not answer fails the
run instead of skipping its tests.

Every test run works in databases (and a Redis key prefix) of its own, created here and
dropped afterwards, so parallel runs on one server never collide.
"""

from __future__ import annotations

import os
import secrets

import redis
import sqlalchemy as sa
from sqlalchemy.engine import make_url

IN_CI = os.environ.get("CI", "").lower() == "true"


def worker() -> str:
    """This pytest-xdist worker's id ("gw0", "gw1", ...), "main" without xdist."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def database_urls() -> dict[str, str]:
    """backend label → admin URL, from TEST_DATABASE_URLS (comma-separated)."""
    urls = {}
    for raw in os.environ.get("TEST_DATABASE_URLS", "").split(","):
        if raw.strip():
            url = make_url(raw.strip())
            label = "mysql" if url.get_backend_name() in ("mysql", "mariadb") else url.get_backend_name()
            urls[label] = raw.strip()
    return urls


def probe_database(url: str) -> str | None:
    """None when the server answers, else why not."""
    engine = sa.create_engine(url, connect_args=_connect_timeout(url))
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return None
    except Exception as exc:  # any driver error means "not available"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    finally:
        engine.dispose()


def probe_redis(url: str) -> str | None:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
        return None
    except redis.RedisError as exc:
        return f"{type(exc).__name__}: {exc}"


def _connect_timeout(url: str) -> dict:
    backend = make_url(url).get_backend_name()
    return {"connect_timeout": 5} if backend in ("postgresql", "mysql", "mariadb") else {}


class ScratchDatabase:
    """A database of this run's (this xdist worker's) own on a server, named
    ``wxauth_t_<worker>_<pid>_<random>``: created by `create()`, dropped by `drop()`."""

    def __init__(self, admin_url: str):
        self.admin_url = make_url(admin_url)
        self.name = f"wxauth_t_{worker()}_{os.getpid()}_{secrets.token_hex(3)}"
        self.url = self.admin_url.set(database=self.name).render_as_string(hide_password=False)
        self.backend = self.admin_url.get_backend_name()

    def _admin(self):
        return sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT",
                                connect_args=_connect_timeout(str(self.admin_url)))

    def create(self) -> "ScratchDatabase":
        engine = self._admin()
        with engine.connect() as conn:
            if self.backend == "postgresql":
                conn.execute(sa.text(f'CREATE DATABASE "{self.name}" ENCODING \'UTF8\''))
            else:
                conn.execute(sa.text(f"CREATE DATABASE `{self.name}` CHARACTER SET utf8mb4 "
                                     "COLLATE utf8mb4_unicode_ci"))
        engine.dispose()
        return self

    def drop(self) -> None:
        engine = self._admin()
        with engine.connect() as conn:
            if self.backend == "postgresql":
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            else:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{self.name}`"))
        engine.dispose()

    def kill_connections(self) -> int:
        """Terminate every server connection to this database (as an idle timeout would)."""
        engine = self._admin()
        with engine.connect() as conn:
            if self.backend == "postgresql":
                killed = conn.execute(sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": self.name}).scalar()
            else:
                ids = conn.execute(sa.text(
                    "SELECT id FROM information_schema.processlist WHERE db = :name"),
                    {"name": self.name}).scalars().all()
                for connection_id in ids:
                    conn.execute(sa.text(f"KILL {int(connection_id)}"))
                killed = len(ids)
        engine.dispose()
        return int(killed)


def reset_schema(engine) -> None:
    """Drop every table (alembic_version included)."""
    meta = sa.MetaData()
    meta.reflect(engine)
    meta.drop_all(engine)

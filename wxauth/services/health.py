"""Readiness: whether the database this server uses and the shared store answer."""

from __future__ import annotations

from sqlalchemy import select

from ..extensions import db
from ..infra.store import StoreUnavailable
from ..models import User
from ..state import state


def check() -> None:
    """Read our own ``users`` table (not only a connection: a dropped or replaced database
    fails here) and ping the shared store (Redis, when configured). Each is bounded by its
    timeouts (``DB_CONNECT_TIMEOUT``/``DB_STATEMENT_TIMEOUT``, ``REDIS_TIMEOUT``).

    Raises:
        the database's errors (answered 503 ``database_unavailable`` by wxauth.errors, as on
        every endpoint); StoreUnavailable (503 ``store_unavailable``).
    """
    db.session.execute(select(User.id).limit(1)).first()
    db.session.commit()  # (ends the read: the connection goes back to the pool)
    if not state().store.ping():
        raise StoreUnavailable("Redis did not answer PING")

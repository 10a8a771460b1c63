"""Readiness: whether the database this server uses and the shared store answer."""

from __future__ import annotations

import logging

from sqlalchemy import select

from ..errors import DATABASE_RETRY_AFTER, Problem, is_database_outage
from ..extensions import db
from ..infra.store import StoreUnavailable
from ..models import User
from ..state import state

log = logging.getLogger(__name__)


def check() -> None:
    """Read our own ``users`` table (not only a connection: a dropped or replaced database
    fails here) and ping the shared store (Redis, when configured). Each is bounded by its
    timeouts (``DB_CONNECT_TIMEOUT``/``DB_STATEMENT_TIMEOUT``, ``REDIS_TIMEOUT``).

    Raises:
        Problem(database_unavailable), Problem(store_unavailable), with ``Retry-After``.
    """
    try:
        db.session.execute(select(User.id).limit(1)).first()
        db.session.commit()  # (ends the read: the connection goes back to the pool)
    except Exception as exc:
        if not is_database_outage(exc):
            raise
        log.warning("health check: database unavailable (%s)", type(exc).__name__)
        db.session.rollback()
        raise Problem("database_unavailable", "The database does not answer.",
                      headers={"Retry-After": str(DATABASE_RETRY_AFTER)}) from None
    if not state().store.ping():
        log.warning("health check: shared store (Redis) unavailable")
        raise Problem("store_unavailable", "The shared store (Redis) does not answer.",
                      headers={"Retry-After": str(StoreUnavailable.retry_after)})

"""Readiness: whether the database and the shared store answer."""

from __future__ import annotations

import logging

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ..errors import Problem
from ..extensions import db
from ..state import state

log = logging.getLogger(__name__)


def check() -> None:
    """Ask the database and the shared store (Redis, when configured) for an answer.

    Raises:
        Problem(database_unavailable), Problem(store_unavailable).
    """
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        log.error("health check: database unavailable (%s)", type(exc).__name__)
        db.session.rollback()
        raise Problem("database_unavailable", "The database does not answer.") from None
    if not state().store.ping():
        log.error("health check: shared store (Redis) unavailable")
        raise Problem("store_unavailable", "The shared store (Redis) does not answer.")

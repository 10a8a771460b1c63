"""Readiness: whether the database this server uses answers, and how the shared store is."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ..extensions import db
from ..models import User
from ..state import state


def check() -> dict[str, Any]:
    """Read our own ``users`` table (not only a connection: a dropped or replaced database
    fails here) and ping the shared store (Redis, when configured). Each is bounded by its
    timeouts (``DB_CONNECT_TIMEOUT``/``DB_STATEMENT_TIMEOUT``, ``REDIS_TIMEOUT``).

    The database is required: it holds the users and their sessions. The shared store is
    not: without Redis, logins are counted by a per-process fallback rate limit and every
    other request is served as usual (README, "When things fail"), so an unanswering Redis
    makes the server ``degraded``, not unready.

    Returns:
        ``{"status": "ok" | "degraded", "store": "ok" | "unavailable"}``.

    Raises:
        the database's errors (answered 503 ``database_unavailable`` by wxauth.errors, as on
        every endpoint).
    """
    db.session.execute(select(User.id).limit(1)).first()
    db.session.commit()  # (ends the read: the connection goes back to the pool)
    store_ok = state().store.ping()
    return {"status": "ok" if store_ok else "degraded",
            "store": "ok" if store_ok else "unavailable"}

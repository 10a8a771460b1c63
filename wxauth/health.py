"""Blueprint `health`: ``GET /healthz``."""

from __future__ import annotations

import logging

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from . import shared_store
from .errors import Problem, documents_problems
from .extensions import db
from .schemas import Blueprint, HealthSchema

blp = Blueprint("health", __name__, description="Liveness and readiness")
log = logging.getLogger(__name__)


@blp.route("/healthz", methods=["GET"])
@blp.response(200, HealthSchema)
@documents_problems(blp, "database_unavailable", "store_unavailable")
def healthz():
    """200 ``{"status": "ok"}`` when the database (and Redis, when configured) answer;
    else 503 ``database_unavailable`` / ``store_unavailable``."""
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        log.error("health check: database unavailable (%s)", type(exc).__name__)
        db.session.rollback()
        raise Problem("database_unavailable", "The database does not answer.") from None
    if not shared_store().ping():
        log.error("health check: shared store (Redis) unavailable")
        raise Problem("store_unavailable", "The shared store (Redis) does not answer.")
    return {"status": "ok"}

"""Blueprint `health`: ``GET /healthz``."""

from __future__ import annotations

from ..errors import documents_problems
from ..services import health
from .schemas import Blueprint, HealthSchema

blp = Blueprint("health", __name__, description="Liveness and readiness")


@blp.route("/healthz", methods=["GET"])
@blp.doc(operationId="getHealth")
@blp.response(200, HealthSchema)
@documents_problems(blp)  # (the outage codes, as every operation)
def healthz():
    """Readiness: whether the database (and Redis, when configured) answer.

    200 ``{"status": "ok"}`` when they do; else 503 ``database_unavailable`` /
    ``store_unavailable``."""
    health.check()
    return {"status": "ok"}

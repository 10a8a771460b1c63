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
    """Readiness: whether the database answers, and the shared store (Redis) too.

    200 ``{"status": "ok", "store": "ok"}`` when both do; 200 ``{"status": "degraded",
    "store": "unavailable"}`` when Redis does not (the server still serves every request:
    logins under a per-process rate limit); 503 ``database_unavailable`` when the database
    does not."""
    return health.check()

"""``GET /metrics`` (Prometheus text format) and the per-request series.

- Every request is counted by endpoint (the Flask URL rule, e.g. ``/auth/login``, so the
  label's values are bounded; ``unmatched`` when no rule matched), method and status, and
  its duration observed (`wxauth.metrics.HTTP_REQUESTS`, ``HTTP_DURATION``).
- ``POST /auth/login`` is also counted by outcome (`wxauth.metrics.LOGINS`): ``new``,
  ``returning`` (the view sets ``g.login_outcome``) or the problem code it answered
  (``g.problem_code``, kept by `wxauth.errors.problem_response`), whichever step refused it
  (rate limit, validation, WeChat).
- ``/metrics`` is closed unless ``METRICS_TOKEN`` is set (404 ``not_found``), and then
  answers only ``Authorization: Bearer <METRICS_TOKEN>`` (401 ``metrics_token_required``
  otherwise; compared in constant time). It is not in the OpenAPI document.
"""

from __future__ import annotations

import hmac
import time

from flask import Flask, Response, current_app, g, request

from .. import metrics
from ..errors import problem_response

LOGIN_ENDPOINT = "auth.login"  # the view of POST /auth/login (blueprint "auth")


def configure_metrics(app: Flask) -> None:
    """Count every request of `app` and serve ``GET /metrics``. The duration is timed from
    ``g.request_started``, set for every request by `wxauth.web.logs.configure_logging`."""

    @app.after_request
    def _count_request(response):
        rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
        metrics.HTTP_REQUESTS.labels(rule, request.method, str(response.status_code)).inc()
        started = g.get("request_started")
        if started is not None:
            metrics.HTTP_DURATION.labels(rule, request.method).observe(
                time.perf_counter() - started)
        if request.endpoint == LOGIN_ENDPOINT:
            outcome = g.get("login_outcome") or g.get("problem_code") or str(
                response.status_code)
            metrics.LOGINS.labels(outcome).inc()
        return response

    app.add_url_rule("/metrics", "metrics", _metrics, methods=["GET"])


def _metrics():
    token = current_app.config.get("METRICS_TOKEN")
    if not token:
        return problem_response("not_found")  # (off: like any address that serves nothing)
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                             token.encode()):
        return problem_response("metrics_token_required",
                                headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})

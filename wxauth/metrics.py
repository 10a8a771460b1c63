"""Prometheus metrics: every series wxauth exports, defined once, and their exposition.

A leaf: it imports prometheus_client and nothing of wxauth, so every layer (the WeChat
client included) records into it. README, Metrics, lists the series.

Under gunicorn, gunicorn.conf.py sets ``PROMETHEUS_MULTIPROC_DIR`` in the master before
any worker imports prometheus_client: each worker then keeps its values in files there and
`exposition` adds them up across the workers, dead ones included for counters and
histograms (prometheus_client's multiprocess mode). Without it (``flask run``, the tests'
in-process app) the process's default registry is used.
"""

from __future__ import annotations

import os

from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge,
                               Histogram, generate_latest, multiprocess)

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

HTTP_REQUESTS = Counter(
    "wxauth_http_requests", "HTTP requests answered, by endpoint (the Flask URL rule, "
    "'unmatched' when none matched), method and status", ["endpoint", "method", "status"])
HTTP_DURATION = Histogram(
    "wxauth_http_request_duration_seconds", "Time to answer an HTTP request, seconds",
    ["endpoint", "method"])
LOGINS = Counter(
    "wxauth_logins", "POST /auth/login outcomes: new, returning, or the problem code",
    ["outcome"])
WECHAT_CALLS = Counter(
    "wxauth_wechat_calls", "Calls to WeChat's server API by API and errcode: WeChat's errcode "
    "('0' success), or timeout, unreachable, bad_response, unavailable (not made: circuit "
    "open or no free slot)", ["api", "errcode"])
WECHAT_DURATION = Histogram(
    "wxauth_wechat_call_duration_seconds", "Time a call to WeChat took (retries included; "
    "calls not made are not observed), seconds", ["api"])
ACCESS_TOKEN_FETCHES = Counter(
    "wxauth_wechat_access_token_fetches", "access_token fetches from WeChat (cache misses), "
    "by appid and result (ok, failed)", ["appid", "result"])
STORE_FALLBACKS = Counter(
    "wxauth_store_fallbacks", "Operations served without the shared store (Redis failing), by "
    "use: access_token (a per-process cache, fetched with getStableAccessToken), rate_limit "
    "(counted per process)", ["use"])
DECRYPT_FAILURES = Counter(
    "wxauth_decrypt_failures", "encryptedData that did not decrypt (decrypt_failed), by "
    "reason (wxauth.wechat.crypto.DecryptError.reason)", ["reason"])
CIRCUIT_STATE = Gauge(
    "wxauth_wechat_circuit_state", "The WeChat circuit breaker: 0 closed, 1 half-open, 2 open "
    "(the highest among the live workers)", multiprocess_mode="livemax")
CIRCUIT_OPENED = Counter(
    "wxauth_wechat_circuit_opened", "Times the WeChat circuit breaker opened")

CIRCUIT_STATES = {"closed": 0, "half-open": 1, "open": 2}


def wechat_call(api: str, errcode: str, seconds: float | None) -> None:
    """Count one call to WeChat API `api` ending in `errcode`; `seconds` None: not made."""
    WECHAT_CALLS.labels(api, errcode).inc()
    if seconds is not None:
        WECHAT_DURATION.labels(api).observe(seconds)


def circuit_state(state: str) -> None:
    """Record the circuit breaker's new state (pybreaker's name: closed, half-open, open)."""
    CIRCUIT_STATE.set(CIRCUIT_STATES.get(state, 0))
    if state == "open":
        CIRCUIT_OPENED.inc()


def exposition() -> tuple[bytes, str]:
    """The current values in Prometheus' text format, and its content type; summed across
    gunicorn's workers in multiprocess mode."""
    if os.environ.get(MULTIPROC_DIR_VARIABLE):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST

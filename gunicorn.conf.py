"""gunicorn settings from the environment; `gunicorn wsgi:app` reads this file by itself.

GUNICORN_BIND (127.0.0.1:8000), GUNICORN_WORKERS or WEB_CONCURRENCY (2), GUNICORN_THREADS (4),
GUNICORN_TIMEOUT (30 s), GUNICORN_GRACEFUL_TIMEOUT (30 s), GUNICORN_KEEPALIVE (5 s),
GUNICORN_ACCESSLOG (off: the app logs one line per request with its request id; "-" =
stdout). Command-line flags still win.
"""

import gc
import os


def _int(name, default, *fallbacks):
    for key in (name, *fallbacks):
        if os.environ.get(key, "").strip():
            return int(os.environ[key])
    return default


bind = os.environ.get("GUNICORN_BIND", "").strip() or "127.0.0.1:8000"
workers = _int("GUNICORN_WORKERS", 2, "WEB_CONCURRENCY")
threads = _int("GUNICORN_THREADS", 4)
timeout = _int("GUNICORN_TIMEOUT", 30)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _int("GUNICORN_KEEPALIVE", 5)
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "").strip() or None


def when_ready(server):
    """Warn when workers cannot share state: each would keep its own revocation list,
    access_token and rate-limit counters."""
    if server.cfg.workers > 1 and not os.environ.get("REDIS_URL", "").strip():
        server.log.warning(
            "wxauth: %d workers and no REDIS_URL: revocations, the WeChat access_token and "
            "rate limits are per worker. Set REDIS_URL in production.", server.cfg.workers)


def post_worker_init(worker):
    """Once the worker has loaded the app: what exists now (modules, the app, SQLAlchemy's
    mappings) lives as long as the process, so it moves out of the cyclic collector's way,
    whose full passes over it showed in every request (README, Performance)."""
    gc.freeze()

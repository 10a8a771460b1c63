"""gunicorn settings from the environment; `gunicorn wsgi:app` reads this file by itself.

GUNICORN_BIND (127.0.0.1:8000), GUNICORN_WORKERS or WEB_CONCURRENCY (2),
GUNICORN_WORKER_CLASS (gevent; or gthread, sync), GUNICORN_WORKER_CONNECTIONS (1000: requests
in flight per gevent worker), GUNICORN_THREADS (gthread only: 4), GUNICORN_TIMEOUT (30 s),
GUNICORN_GRACEFUL_TIMEOUT (30 s), GUNICORN_KEEPALIVE (5 s), GUNICORN_ACCESSLOG (off: the app
logs one line per request with its request id; "-" = stdout). Command-line flags still win.

Why gevent: a login waits on WeChat (tens to hundreds of ms from a Chinese cloud, seconds
when it stalls) far longer than it uses the CPU. A gevent worker keeps hundreds of such
requests in flight, so a slow or stalled WeChat neither caps the login rate at threads ÷
latency nor takes the threads that `GET /profile` and `/healthz` need. gunicorn's gevent
worker monkey-patches the standard library in each worker before it loads the app (no
preload_app), so urllib3, redis-py and PyMySQL cooperate, and psycopg ≥ 3.1.14 does by
itself. README, "When things fail" and Performance, has the measurements.
"""

import gc
import os
import shutil
import subprocess
import sys
import tempfile

import serving

_PROBLEMS = []  # malformed GUNICORN_* numbers, reported by on_starting


def _int(name, default, *fallbacks):
    for key in (name, *fallbacks):
        value = os.environ.get(key, "").strip()
        if value:
            if value.isdigit():
                return int(value)
            _PROBLEMS.append(f"{key}={value!r} is not a whole number: e.g. {key}={default}")
    return default


bind = os.environ.get("GUNICORN_BIND", "").strip() or "127.0.0.1:8000"
workers = _int("GUNICORN_WORKERS", 2, "WEB_CONCURRENCY")
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "").strip() or "gevent"
worker_connections = _int("GUNICORN_WORKER_CONNECTIONS", 1000)
threads = _int("GUNICORN_THREADS", 4)  # (gthread workers only)
timeout = _int("GUNICORN_TIMEOUT", 30)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _int("GUNICORN_KEEPALIVE", 5)
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "").strip() or None
# gunicorn ≥ 27's control socket is one path per user ($HOME/.gunicorn/gunicorn.ctl): every
# master rebinds it and removes it on exit, also from under another instance. Unused here.
control_socket_disable = True


def on_starting(server):
    """Before listening or booting a worker: the settings' check, then the metrics folder."""
    _check_settings(server)
    _metrics_folder(server)


def _check_settings(server):
    """Check the settings before listening or booting a worker: load the app once in a
    child process, as a worker would (the master itself imports none of it, so gevent
    patches each worker before its first import). On a configuration error the child has
    printed one line per problem; the master stops with its exit status (4), instead of
    booting workers that each print them, die, and stop the master ("App failed to load")."""
    for problem in _PROBLEMS:
        print(f"wxauth: configuration error: {problem}", file=sys.stderr)
    module = (getattr(server.app, "app_uri", None) or "").partition(":")[0]
    status = 0
    if module:
        env = dict(os.environ)
        if server.cfg.pythonpath:  # (gunicorn adds it to the master's sys.path)
            extra = os.pathsep.join(os.path.abspath(p) for p in server.cfg.pythonpath.split(","))
            env["PYTHONPATH"] = extra + (os.pathsep + env["PYTHONPATH"]
                                         if env.get("PYTHONPATH") else "")
        status = subprocess.run(
            [sys.executable, "-c", "import importlib, sys; importlib.import_module(sys.argv[1])",
             module], env=env, check=False).returncode
    if status or _PROBLEMS:
        if server.pidfile is not None:
            server.pidfile.unlink()
        sys.exit(status or 4)


def when_ready(server):
    """Warn when workers cannot share state: each would keep its own revocation list,
    access_token and rate-limit counters."""
    if server.cfg.workers > 1 and not os.environ.get("REDIS_URL", "").strip():
        server.log.warning(
            "wxauth: %d workers and no REDIS_URL: revocations, the WeChat access_token and "
            "rate limits are per worker. Set REDIS_URL in production.", server.cfg.workers)


def pre_request(worker, req):
    """gevent: let the other requests of this worker run before this one starts. A request
    that never waits on the network (SQLite, a local Redis answering at once) would otherwise
    follow the previous one on its connection without a pause, and the requests queued
    behind it wait (GET /profile's p99: README, Performance)."""
    if worker.cfg.worker_class_str == "gevent":
        import gevent

        gevent.sleep(0)


def post_worker_init(worker):
    """Once the worker has loaded the app: what exists now (modules, the app, SQLAlchemy's
    mappings) lives as long as the process, so it moves out of the cyclic collector's way,
    whose full passes over it showed in every request (README, Performance)."""
    gc.freeze()


# --- Trusted proxies: gunicorn's forwarded_allow_ips (X-Forwarded-Proto, forwarder headers)
# are the app's TRUSTED_PROXIES (wxauth.web.proxy), one list for both; unset: none.
forwarded_allow_ips = ",".join(str(n) for n in serving.parse_networks(
    os.environ.get("TRUSTED_PROXIES", "").strip()))


# --- Logs: with LOG_FORMAT=json gunicorn's own lines are JSON too, in the app's format
# (serving.gunicorn_logconfig); GUNICORN_ACCESSLOG still decides whether access lines exist.
if os.environ.get("LOG_FORMAT", "").strip() == "json":
    logconfig_dict = serving.gunicorn_logconfig(
        os.environ.get("LOG_LEVEL", "").strip().upper() or "INFO", accesslog)


# --- Metrics: prometheus_client's multiprocess mode, so /metrics adds up every worker
# (wxauth.metrics). The master sets PROMETHEUS_MULTIPROC_DIR before it forks a worker (which
# imports prometheus_client only then): a fresh temporary directory, removed on exit, or the
# operator's own, emptied at start.
_METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"
_METRICS_TEMP_PREFIX = "wxauth-metrics-"


def _metrics_folder(server):
    """Give the workers an empty directory for their metric values (after the settings'
    check, whose child process must not write there)."""
    if "prometheus_client" in sys.modules:  # (preload_app: the app loaded in the master)
        server.log.warning("wxauth: prometheus_client was imported before the metrics "
                           "folder was set: /metrics will not add up the workers")
    given = os.environ.get(_METRICS_DIR, "").strip()
    if given:
        os.makedirs(given, exist_ok=True)
        for name in os.listdir(given):
            if name.endswith(".db"):
                os.unlink(os.path.join(given, name))
    else:
        os.environ[_METRICS_DIR] = tempfile.mkdtemp(prefix=_METRICS_TEMP_PREFIX)


def child_exit(server, worker):
    """A worker ended: its live gauges (the circuit breaker's state) stop counting."""
    if os.environ.get(_METRICS_DIR):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the temporary directory on_starting made (an operator's own stays)."""
    path = os.environ.get(_METRICS_DIR, "")
    if (os.path.dirname(path) == tempfile.gettempdir()
            and os.path.basename(path).startswith(_METRICS_TEMP_PREFIX)):
        shutil.rmtree(path, ignore_errors=True)

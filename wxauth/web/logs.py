"""Logging: one line per request with a request id, text or JSON, secrets redacted.

- Every request gets an id: the incoming ``X-Request-ID`` when it looks like one (nginx's
  ``$request_id``, a UUID), else a new one; it is returned as ``X-Request-ID`` and appears on
  every log line written while handling the request.
- One access line per request on the ``wxauth.request`` logger: method, path, status,
  duration in ms, client address.
- ``LOG_FORMAT=json`` writes one JSON object per line (python-json-logger); timestamps
  are ISO 8601 with the zone. The formats are `serving`'s, which gunicorn's own lines use
  too (gunicorn.conf.py).
- `wxauth.redaction.RedactingFilter` removes the AppSecret, the JWT key, the metrics token,
  session_keys, login codes, tokens, encryptedData/iv/signature values and anything shaped
  like a JWT from messages and tracebacks, whichever logger wrote them, gunicorn's
  included.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, g, has_request_context, request

import serving

from ..redaction import RedactingFilter

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{8,64}\Z")
# gunicorn's loggers: their own handlers (text mode) or a file's (GUNICORN_ACCESSLOG) may
# not pass through ours, so they are filtered themselves
GUNICORN_LOGGERS = ("gunicorn.error", "gunicorn.access")

access_log = logging.getLogger("wxauth.request")

class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record ("-" outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = (g.get("request_id", "-") if has_request_context() else "-")
        return True


def configure_logging(app: Flask) -> None:
    """Install the request id, the access line and redaction for `app`.

    A stream handler (text or JSON) goes on the root logger unless the process already
    configured one (pytest, an embedding application). The request-id and redacting filters
    go on that handler, where they see every logger's records; when the process owns the
    handlers, they go on each ``wxauth`` logger instead. gunicorn's loggers get the
    redacting filter themselves, whatever handlers they write to.
    """
    cfg = app.config
    redactor = RedactingFilter([cfg.get("WECHAT_SECRET"), cfg.get("JWT_SECRET_KEY"),
                                *(s["secret"] for s in cfg.get("WECHAT_APP_SETTINGS", {}).values()),
                                *str(cfg.get("SESSION_KEY_ENCRYPTION_KEY") or "").split(","),
                                cfg.get("METRICS_TOKEN")])
    request_ids = RequestIdFilter()
    logging.getLogger("wxauth").setLevel(cfg["LOG_LEVEL"])
    # A logger's filters see only its own records, not its children's: each of ours.
    names = {"wxauth", access_log.name,
             *(n for n in logging.root.manager.loggerDict if n.startswith("wxauth."))}
    for name in (*names, *GUNICORN_LOGGERS):
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, (RedactingFilter, RequestIdFilter))]:
            logger.removeFilter(old)
    for name in GUNICORN_LOGGERS:
        logging.getLogger(name).addFilter(redactor)

    root = logging.getLogger()
    ours = [h for h in root.handlers if serving.is_own_handler(h)]
    if root.handlers and not ours:  # someone else owns the handlers: filter our loggers
        for name in names:
            logging.getLogger(name).addFilter(request_ids)
            logging.getLogger(name).addFilter(redactor)
    else:
        for old in ours:
            root.removeHandler(old)
        handler = serving.log_handler(cfg["LOG_FORMAT"])
        handler.addFilter(request_ids)
        handler.addFilter(redactor)
        root.addHandler(handler)
        if root.level > logging.INFO or root.level == logging.NOTSET:
            root.setLevel(cfg["LOG_LEVEL"])

    @app.before_request
    def _start_request():
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        g.request_started = time.perf_counter()

    @app.after_request
    def _log_request(response):
        request_id = g.get("request_id")
        if request_id is None:  # before_request did not run (e.g. a routing error first)
            request_id = g.request_id = uuid.uuid4().hex
        response.headers[REQUEST_ID_HEADER] = request_id
        started = g.get("request_started")
        duration_ms = round((time.perf_counter() - started) * 1000, 1) if started else 0.0
        access_log.info(
            "%s %s %s %.1fms", request.method, request.path, response.status_code, duration_ms,
            extra={"method": request.method, "path": request.path,
                   "status": response.status_code, "duration_ms": duration_ms,
                   "remote_addr": request.remote_addr, "problem": g.get("problem_code")})
        return response

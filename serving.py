"""What gunicorn's master shares with the app: log line formats and the trusted proxies.

gunicorn.conf.py imports this module in the master, before any worker exists, so it
imports only the standard library and python-json-logger: the app itself (`wxauth`) must
load in each worker, after gevent's monkey-patching (see gunicorn.conf.py), and never in the
master. The app (`wxauth.web.logs`, `config`) uses the same definitions:

- `json_formatter` / `text_formatter`: the one JSON and the one text line format, ISO 8601
  timestamps with the zone (``2026-11-21T10:00:00.123+08:00``);
- `log_handler`: the stderr handler the app owns (and replaces with its own, with the request
  id and redaction filters, when a worker loads it);
- `AccessFields`: gunicorn's access line as JSON fields (client address, method, path,
  status, duration, request id);
- `gunicorn_logconfig`: gunicorn's ``logconfig_dict`` for ``LOG_FORMAT=json``;
- `parse_networks`: ``TRUSTED_PROXIES`` as networks, for the app's X-Forwarded-* handling
  (`wxauth.web.proxy`) and gunicorn's ``forwarded_allow_ips`` alike.
"""

from __future__ import annotations

import ipaddress
import logging
import sys
from datetime import datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(process)d %(request_id)s %(message)s"
JSON_NAMES = {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"}
NO_REQUEST = {"request_id": "-"}  # a line written outside any request


def parse_networks(value: str | None) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """'127.0.0.1, 10.0.0.0/8' → networks (host bits allowed: ``10.0.0.1/8`` is 10.0.0.0/8);
    ValueError when an item is not an address or network."""
    if not value:
        return ()
    return tuple(ipaddress.ip_network(item.strip(), strict=False)
                 for item in value.split(",") if item.strip())


class _IsoTime:
    """``asctime`` as ISO 8601 local time with milliseconds and the zone's offset."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created).astimezone().isoformat(
            timespec="milliseconds")


class TextFormatter(_IsoTime, logging.Formatter):
    """``<time> <level> <logger> [<request id>] <message>``."""


class JsonLineFormatter(_IsoTime, JsonFormatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``pid``, ``request_id``,
    ``message`` and the record's extra fields.

    A traceback is written from the record's ``exc_text`` when a filter set it (the
    redacted text of `wxauth.redaction.RedactingFilter`), never formatted again from the
    exception itself, which python-json-logger would otherwise do.
    """

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):
            record.request_id = NO_REQUEST["request_id"]
        if record.exc_info and record.exc_text:
            exc_info, record.exc_info = record.exc_info, None
            try:
                return super().format(record)
            finally:
                record.exc_info = exc_info
        return super().format(record)


def json_formatter() -> JsonLineFormatter:
    return JsonLineFormatter(JSON_FIELDS, rename_fields=JSON_NAMES)


def text_formatter() -> TextFormatter:
    return TextFormatter(TEXT_FORMAT, defaults=NO_REQUEST)


class OwnHandler(logging.StreamHandler):
    """The stream handler `log_handler` makes: the app may replace it."""


def log_handler(log_format: str = "text", stream: Any = None) -> logging.Handler:
    """A stream handler (stderr unless `stream`) with the `log_format` ("text" or "json")
    formatter, marked as the app's own (`is_own_handler`)."""
    handler = OwnHandler(stream or sys.stderr)
    handler.setFormatter(json_formatter() if log_format == "json" else text_formatter())
    return handler


def is_own_handler(handler: logging.Handler) -> bool:
    """Whether `handler` was made by `log_handler` (the app may replace it)."""
    return isinstance(handler, OwnHandler)


class AccessFields(logging.Filter):
    """gunicorn's access record → fields: ``remote_addr`` (the client's address: REMOTE_ADDR
    after the app's TRUSTED_PROXIES handling), ``method``, ``path`` (no query string),
    ``status``, ``duration_ms``, ``bytes`` and ``request_id`` (the response's X-Request-ID).
    Its message stays gunicorn's ``access_log_format`` line."""

    def filter(self, record: logging.LogRecord) -> bool:
        atoms = record.args
        if isinstance(atoms, dict) and not hasattr(record, "remote_addr"):
            record.remote_addr = atoms.get("h")
            record.method = atoms.get("m")
            record.path = atoms.get("U")
            try:
                record.status = int(atoms.get("s"))
            except (TypeError, ValueError):
                record.status = atoms.get("s")
            duration = atoms.get("D")
            record.duration_ms = round(duration / 1000, 1) if isinstance(duration, int) else None
            record.bytes = atoms.get("B")
            request_id = atoms.get("{x-request-id}o")
            if request_id and request_id != "-":
                record.request_id = request_id
        return True


def gunicorn_logconfig(level: str = "INFO", accesslog: str | None = None) -> dict[str, Any]:
    """gunicorn's ``logconfig_dict`` for JSON lines: its own lines (``gunicorn.error``) go
    to the root logger's stderr handler (`log_handler`), which each worker's app replaces
    with its own (request ids, redaction); access lines (``gunicorn.access``) only when
    `accesslog` is set: ``-`` = stdout, else a file path.

    Args:
        level: LOG_LEVEL (DEBUG, INFO, WARNING, ERROR, CRITICAL).
        accesslog: GUNICORN_ACCESSLOG, None when unset.
    """
    handlers: dict[str, Any] = {"stderr": {"()": log_handler, "log_format": "json"}}
    access: dict[str, Any] = {"level": "WARNING", "handlers": [], "propagate": False}
    if accesslog:
        handlers["access"] = (
            {"()": log_handler, "log_format": "json", "stream": sys.stdout} if accesslog == "-"
            else {"class": "logging.FileHandler", "filename": accesslog, "formatter": "json"})
        access = {"level": "INFO", "handlers": ["access"], "propagate": False,
                  "filters": ["access_fields"]}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": json_formatter}},
        "filters": {"access_fields": {"()": AccessFields}},
        "handlers": handlers,
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {"gunicorn.error": {"level": level, "handlers": [], "propagate": True},
                    "gunicorn.access": access},
    }

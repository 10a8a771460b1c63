"""The request body as the WSGI server streams it: a body that cannot be read is the
client's fault (400), never the server's (500).

A server raises exceptions of its own when the body it streams to the app does not parse:
gunicorn's ``InvalidChunkSize``, ``ChunkMissingTerminator``, ``InvalidChunkExtension`` for a
malformed chunked body, in the middle of ``request.get_data()`` or the form parser. Werkzeug
turns only ``OSError`` and ``ValueError`` from the stream into a 400 (``ClientDisconnected``);
anything else reached the error handler as a bug, a 500 internal_error. `ReadableBody` wraps
``wsgi.input`` so that any failure to read it is werkzeug's ``BadRequest``: 400
invalid_request. (gunicorn then closes the connection: the rest of it cannot be parsed.)
"""

from __future__ import annotations

from typing import Any

from werkzeug.exceptions import BadRequest, HTTPException

from ..i18n import _l


class _Input:
    """``wsgi.input`` whose read errors are BadRequest (the WSGI input methods only)."""

    def __init__(self, stream):
        self._stream = stream

    def _read(self, method: str, *args: Any):
        try:
            return getattr(self._stream, method)(*args)
        except HTTPException:
            raise
        except Exception as exc:  # noqa: BLE001  whatever the server raises for a bad body
            raise BadRequest(_l("The request body could not be read: malformed chunked "
                                "encoding, or the connection broke.")) from exc

    def read(self, *args: Any) -> bytes:
        return self._read("read", *args)

    def readline(self, *args: Any) -> bytes:
        return self._read("readline", *args)

    def readlines(self, *args: Any) -> list[bytes]:
        return self._read("readlines", *args)

    def __iter__(self):
        return iter(self.readline, b"")


class ReadableBody:
    """WSGI middleware: `_Input` around each request's ``wsgi.input``."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        environ["wsgi.input"] = _Input(environ["wsgi.input"])
        return self.app(environ, start_response)

"""The support console's session cookie, read only where the browser sends it.

Flask opens the session of every request; the console's cookie is scoped to
``SESSION_COOKIE_PATH`` (``/admin``), so the API's requests (the mini-program's, a
gateway's) carry none. `ConsoleSessionInterface` gives them Flask's null session instead of
verifying a cookie that cannot be there (itsdangerous' serializer is built per request).
"""

from __future__ import annotations

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session on the paths ``SESSION_COOKIE_PATH`` covers (RFC 6265
    path-match), Flask's null session elsewhere (writing to it raises)."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        scope = self.get_cookie_path(app).rstrip("/")
        path = request.path
        if scope and path != scope and not path.startswith(scope + "/"):
            return self.make_null_session(app)
        return super().open_session(app, request)

"""Issue 23 §5: GET /auth/verify for a gateway, and deploy/nginx/wxauth-protect.conf, which
puts it in front of a team's own service with nginx's auth_request.

- The endpoint over real HTTP on every database: 204 with the identity headers for a valid
  access token; 401 with ``WWW-Authenticate: Bearer error="invalid_token"`` for a malformed,
  refresh, logged-out or ended-session token, 403 for a disabled user.
- Real nginx (the shipped site with the snippet included) in front of real gunicorn and of a
  small service that echoes the headers it receives: a valid token passes with the identity
  headers; a client's forged X-Wxauth-* headers never reach the service; a request without a
  token, and the next one after a logout, get wxauth's own problem answer and never reach it;
  with wxauth down, the site's 503 with Retry-After.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from helpers import APPID, Process, assert_problem, free_port, migrate
from test_nginx import (Nginx, assert_proxy_problem, https_client, nginx_binary,  # noqa: F401
                        unit_command)

CHALLENGE = 'Bearer error="invalid_token"'
IDENTITY = ("X-Wxauth-Openid", "X-Wxauth-Appid", "X-Wxauth-Unionid", "X-Wxauth-Account-Id",
            "X-Wxauth-Session-Id")


def verify(server, token: str | None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return server.get("/auth/verify", headers=headers)


def current_session(server, token: str) -> str:
    listed = server.get("/auth/sessions", token=token).json()["sessions"]
    return next(s["id"] for s in listed if s["current"])


@pytest.mark.databases
def test_a_valid_token_answers_204_with_the_identity(server):
    ann = server.login("o-gate-ann", unionid="u-gate-ann")
    bob = server.login("o-gate-bob")
    for body, openid, unionid in ((ann, "o-gate-ann", "u-gate-ann"), (bob, "o-gate-bob", "")):
        answer = verify(server, body["access_token"])
        assert answer.status_code == 204, answer.text
        assert answer.content == b"" and "Content-Type" not in answer.headers
        assert {name: answer.headers[name] for name in IDENTITY} == {
            "X-Wxauth-Openid": openid, "X-Wxauth-Appid": APPID, "X-Wxauth-Unionid": unionid,
            "X-Wxauth-Account-Id": str(body["user"]["account_id"]),
            "X-Wxauth-Session-Id": current_session(server, body["access_token"])}


@pytest.mark.databases
def test_a_refused_token_answers_401_with_a_bearer_challenge(server, runner):
    assert_problem(verify(server, None), 401, "authorization_required")
    assert verify(server, None).headers["WWW-Authenticate"] == 'Bearer realm="wxauth"'
    body = server.login("o-gate-refused")
    for token, code in ((body["access_token"][:-4] + "AAAA", "token_invalid"),
                        ("not-a-token", "token_invalid"),
                        (body["refresh_token"], "token_invalid")):
        answer = verify(server, token)
        assert_problem(answer, 401, code)
        assert answer.headers["WWW-Authenticate"] == CHALLENGE
        assert not any(name in answer.headers for name in IDENTITY)

    other = server.login("o-gate-refused")  # a second device: ended from the first
    session = current_session(server, other["access_token"])
    assert server.request("DELETE", f"/auth/sessions/{session}",
                          token=body["access_token"]).status_code == 204
    answer = verify(server, other["access_token"])
    assert_problem(answer, 401, "token_revoked")
    assert answer.headers["WWW-Authenticate"] == CHALLENGE

    assert server.post("/auth/logout", token=body["access_token"]).status_code == 204
    assert_problem(verify(server, body["access_token"]), 401, "token_revoked")

    disabled = server.login("o-gate-disabled")
    result = runner.invoke(args=["users", "disable", "o-gate-disabled", "--reason", "test"])
    assert result.exit_code == 0, result.output
    answer = verify(server, disabled["access_token"])
    assert_problem(answer, 403, "user_disabled")
    assert not any(name in answer.headers for name in IDENTITY)

    # the person's account disabled, the user's tokens revoked, the user deleted: the
    # gateway's check (read without the ORM) answers as every protected view does
    account = server.login("o-gate-account")
    revoked = server.login("o-gate-revoked")
    deleted = server.login("o-gate-deleted")
    for args in (["accounts", "disable", str(account["user"]["account_id"]), "--reason", "t"],
                 ["users", "revoke-tokens", "o-gate-revoked"],
                 ["users", "delete", "o-gate-deleted", "--yes"]):
        result = runner.invoke(args=args)
        assert result.exit_code == 0, result.output
    for body, status, code in ((account, 403, "user_disabled"), (revoked, 401, "token_revoked"),
                               (deleted, 401, "user_not_found"),
                               (disabled, 403, "user_disabled"), (other, 401, "token_revoked")):
        assert_problem(verify(server, body["access_token"]), status, code)
        assert_problem(server.get("/profile", token=body["access_token"]), status, code)


class Echo:
    """A team's own service: answers every request with the headers it received, as JSON,
    and remembers the paths it was asked for."""

    def __init__(self):
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                seen.append(self.path)
                body = json.dumps(dict(self.headers.items())).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_nginx_auth_request_protects_a_service(nginx_binary, production_env, emulator,
                                               tmp_path):
    app_port = free_port()
    env = dict(production_env, GUNICORN_BIND=f"127.0.0.1:{app_port}", GUNICORN_WORKERS="1",
               MEDIA_ROOT=str(tmp_path / "media"), TRUSTED_PROXIES="127.0.0.1")
    migrate(env)
    service = Echo()
    nginx = Nginx(nginx_binary, tmp_path / "nginx", upstream_port=app_port,
                  media_root=tmp_path / "media", protected_port=service.port)
    client = https_client(nginx.cert)
    server = None
    try:
        server = Process(unit_command(env), env, f"http://127.0.0.1:{app_port}")
        forged = {"X-Wxauth-Openid": "o-someone-else", "X-Wxauth-Unionid": "u-someone-else",
                  "X-Wxauth-Account-Id": "1", "X-Wxauth-Appid": "wx0000000000000000",
                  "X-Wxauth-Session-Id": "f" * 32}

        # no token, a forged identity: wxauth's own 401, the service never asked
        answer = client.get(nginx.url + "/api/orders", headers=forged, timeout=10)
        assert_problem(answer, 401, "authorization_required")
        assert answer.headers["Content-Type"] == "application/problem+json"
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="wxauth"'
        assert service.seen == []

        login = client.post(nginx.url + "/auth/login", timeout=10,
                            json={"code": emulator.mint("o-gate-nginx")["code"]})
        assert login.status_code == 200, login.text
        body = login.json()
        auth = {"Authorization": f"Bearer {body['access_token']}"}
        sessions = client.get(nginx.url + "/auth/sessions", headers=auth, timeout=10).json()
        session = next(s["id"] for s in sessions["sessions"] if s["current"])

        # a valid token: the service gets the identity, and none of the forged values (the
        # user has no unionid: no X-Wxauth-Unionid at all), for GET and POST alike
        for method in ("GET", "POST"):
            answer = client.request(method, nginx.url + "/api/orders?page=2", timeout=10,
                                    headers={**auth, **forged}, json={"item": 1})
            assert answer.status_code == 200, answer.text
            received = {k.lower(): v for k, v in answer.json().items()}
            assert {k: v for k, v in received.items() if k.startswith("x-wxauth-")} == {
                "x-wxauth-openid": "o-gate-nginx", "x-wxauth-appid": APPID,
                "x-wxauth-account-id": str(body["user"]["account_id"]),
                "x-wxauth-session-id": session}
            assert received["authorization"] == auth["Authorization"]
        assert service.seen == ["/api/orders?page=2"] * 2

        # a malformed token: wxauth's answer with its challenge
        answer = client.get(nginx.url + "/api/orders", timeout=10,
                            headers={"Authorization": "Bearer nonsense"})
        assert_problem(answer, 401, "token_invalid")
        assert answer.headers["WWW-Authenticate"] == CHALLENGE

        # logged out: the next request is refused, the service not asked
        assert client.post(nginx.url + "/auth/logout", headers=auth,
                           timeout=10).status_code == 204
        answer = client.get(nginx.url + "/api/orders", headers=auth, timeout=10)
        assert_problem(answer, 401, "token_revoked")
        assert answer.headers["WWW-Authenticate"] == CHALLENGE
        assert len(service.seen) == 2

        # wxauth down: the site's 503 problem with Retry-After, the service not asked
        server.stop()
        fresh = {"Authorization": f"Bearer {body['access_token']}"}
        answer = client.get(nginx.url + "/api/orders", headers=fresh, timeout=10)
        assert_proxy_problem(answer, 503, "service_unavailable")
        assert answer.headers["Retry-After"] == "5"
        assert len(service.seen) == 2
    finally:
        if server is not None:
            server.stop()
        nginx.stop()
        service.stop()

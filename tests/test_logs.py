"""Logs: a line per request with its id, JSON on request, and secrets redacted everywhere."""

import http.client
import json
import logging
from datetime import datetime

import pytest

from helpers import JWT_KEY, SECRET, Process, ServerClient, free_port, migrate
from wxauth import create_app
from wxauth.redaction import RedactingFilter


def json_lines(output: str) -> list[dict]:
    """Every line of a process's output as a JSON object (AssertionError naming the first
    line that is not one)."""
    lines = []
    for line in output.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    return lines


class OwnLogging:
    """Within the test body: a process whose logging nobody configured yet (as under
    gunicorn), i.e. without pytest's capturing handlers on the root logger."""

    def __enter__(self):
        self.root = logging.getLogger()
        self.saved, self.level = self.root.handlers[:], self.root.level
        self.root.handlers = []
        return self.root

    def __exit__(self, *exc):
        self.root.handlers, self.root.level = self.saved, self.level


def test_redacting_filter_unit():
    f = RedactingFilter([SECRET])
    jwt_like = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJvLWFsaWNlIn0.c2lnbmF0dXJl"
    cases = {
        f"GET /sns/jscode2session?appid=wx1&secret={SECRET}&js_code=081abc": SECRET,
        f"Authorization: Bearer {jwt_like}": jwt_like,
        '{"session_key": "tiihtNczf5v6AKRyjwEUhQ==", "openid": "o1"}': "tiihtNczf5v6AKRyjwEUhQ==",
        "encryptedData=CiyLU1Aw2KjvrjMdj8YKliAjtP4g iv=r7BXXKkLb8qrSNn05n0qiA==": "CiyLU1Aw2K",
        "login with code=0a3Xyz123 failed": "0a3Xyz123",
        "refresh_token: abc.def.ghi": "abc.def.ghi",
    }
    for text, secret in cases.items():
        redacted = f.redact(text)
        assert secret not in redacted, redacted
    assert "openid" in f.redact('{"session_key": "x", "openid": "o1"}')
    assert f.redact("errcode=40029 for openid o1") == "errcode=40029 for openid o1"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_every_logger_is_redacted_including_tracebacks(app_config, capsys, log_format):
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.abcdefgh"
    with OwnLogging():
        app = create_app(dict(app_config, LOG_FORMAT=log_format))
        logging.getLogger("wxauth.errors").warning("token %s secret=%s", token, SECRET)
        logging.getLogger("sqlalchemy.engine").warning(
            "params {'session_key': 'c2VjcmV0a2V5MTIzNA=='}")
        try:
            raise RuntimeError(f"upstream said {SECRET} and {JWT_KEY}")
        except RuntimeError:
            logging.getLogger("somelib").exception("failure")
    err = capsys.readouterr().err
    assert "failure" in err and "RuntimeError" in err and "sqlalchemy.engine" in err
    for secret in (SECRET, JWT_KEY, token, "c2VjcmV0a2V5MTIzNA=="):
        assert secret not in err
    del app


def one_worker_gunicorn(env: dict[str, str]) -> Process:
    """Migrate, then ``gunicorn -w 1 wsgi:app`` in `env` on a free loopback port."""
    migrate(env)
    port = free_port()
    return Process(["gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}", "wsgi:app"], env,
                   f"http://127.0.0.1:{port}")


def test_gunicorn_json_logs_a_line_per_request_without_secrets(production_env, emulator):
    env = dict(production_env, LOG_FORMAT="json", LOG_LEVEL="DEBUG")
    server = one_worker_gunicorn(env)
    try:
        client = ServerClient(server.url, emulator)
        code = emulator.mint("o-logs")["code"]
        login = client.post("/auth/login", json={"code": code},
                            headers={"X-Request-ID": "req-from-nginx-1"})
        assert login.headers["X-Request-ID"] == "req-from-nginx-1"
        tokens = login.json()
        detail = emulator.encrypt("o-logs", {"nickName": "Logs"})
        assert client.post("/profile", token=tokens["access_token"], json=detail).status_code == 200
        bad = client.post("/auth/login", json={"code": code})  # used: a WeChat error is logged
        assert bad.status_code == 400
        generated = bad.headers["X-Request-ID"]
        assert generated and generated != "req-from-nginx-1"
        odd = client.get("/healthz", headers={"X-Request-ID": "bad id\\n<script>"})
        assert odd.headers["X-Request-ID"] != "bad id\\n<script>"
        session_key = emulator.session_key("o-logs")
    finally:
        server.stop()
    lines = [json.loads(line) for line in server.output().splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("logger") == "wxauth.request"]
    assert [a["path"] for a in access if a["path"] != "/healthz"] == [
        "/auth/login", "/profile", "/auth/login"]
    first = next(a for a in access if a["path"] == "/auth/login")
    assert first["request_id"] == "req-from-nginx-1"
    assert first["method"] == "POST" and first["status"] == 200
    assert isinstance(first["duration_ms"], float)
    failure = [line for line in lines if line.get("request_id") == generated]
    assert any("40163" in line["message"] for line in failure)  # the WeChat error, same id
    output = server.output()
    for secret in (SECRET, JWT_KEY, session_key, code, tokens["access_token"],
                   tokens["refresh_token"], detail["encryptedData"]):
        assert secret not in output


def get_from(source: str, port: int, path: str, **headers: str) -> int:
    """GET `path` from 127.0.0.1:`port` over a connection made from the address `source`
    (any 127.x address is this machine's)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10,
                                            source_address=(source, 0))
    try:
        connection.request("GET", path, headers={"Connection": "close", **headers})
        return connection.getresponse().status
    finally:
        connection.close()


def test_gunicorn_lines_are_json_with_zoned_times_client_addresses_and_no_secrets(
        production_env, emulator):
    """LOG_FORMAT=json: every line gunicorn's master, its worker and the app write is one
    JSON object (gunicorn's start-up lines and its access lines included), with an ISO 8601
    time carrying its zone; the access lines' client address follows X-Forwarded-For only
    from TRUSTED_PROXIES, in gunicorn's access line as in the app's; secrets sent in a
    request appear nowhere."""
    env = dict(production_env, LOG_FORMAT="json", LOG_LEVEL="DEBUG", GUNICORN_ACCESSLOG="-",
               TRUSTED_PROXIES="127.0.0.1")
    server = one_worker_gunicorn(env)
    port = int(server.url.rsplit(":", 1)[1])
    try:
        client = ServerClient(server.url, emulator)
        code = emulator.mint("o-json-lines")["code"]
        tokens = client.post("/auth/login", json={"code": code}).json()
        leaky = f"/healthz?code={code}&secret={SECRET}&token={tokens['access_token']}"
        assert get_from("127.0.0.1", port, leaky, **{
            "X-Forwarded-For": "198.51.100.7", "X-Request-ID": "req-via-proxy-1"}) == 200
        assert get_from("127.0.0.2", port, leaky, **{
            "X-Forwarded-For": "198.51.100.8", "X-Request-ID": "req-direct-0001"}) == 200
    finally:
        server.stop()
    output = server.output()
    lines = json_lines(output)
    messages = [line["message"] for line in lines]
    assert any(m.startswith("Starting gunicorn") for m in messages), messages
    assert any(m.startswith("Booting worker") for m in messages), messages
    for line in lines:
        assert datetime.fromisoformat(line["time"]).tzinfo is not None, line

    def access(logger: str, request_id: str) -> dict:
        [line] = [x for x in lines if x["logger"] == logger and x["request_id"] == request_id]
        return line

    for logger in ("gunicorn.access", "wxauth.request"):
        assert access(logger, "req-via-proxy-1")["remote_addr"] == "198.51.100.7"
        assert access(logger, "req-direct-0001")["remote_addr"] == "127.0.0.2"
    proxied = access("gunicorn.access", "req-via-proxy-1")
    assert proxied["status"] == 200 and proxied["path"] == "/healthz"
    assert proxied["message"].startswith("198.51.100.7 ")
    # gunicorn trusts the same proxies (its X-Forwarded-Proto handling, forwarder headers)
    assert "forwarded_allow_ips: ['127.0.0.1/32']" in output
    for secret in (SECRET, JWT_KEY, code, tokens["access_token"], tokens["refresh_token"]):
        assert secret not in output

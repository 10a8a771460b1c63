"""Logs: a line per request with its id, JSON on request, and secrets redacted everywhere."""

import json
import logging

from helpers import JWT_KEY, SECRET, Process, ServerClient, free_port, run
from wxauth import create_app
from wxauth.redaction import RedactingFilter


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


def test_every_logger_is_redacted_including_tracebacks(app_config, capsys):
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.abcdefgh"
    with OwnLogging():
        app = create_app(app_config)
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


def test_gunicorn_json_logs_a_line_per_request_without_secrets(production_env, emulator):
    env = dict(production_env, LOG_FORMAT="json", LOG_LEVEL="DEBUG")
    assert run(["flask", "--app", "wsgi", "db", "upgrade"], env).returncode == 0
    port = free_port()
    server = Process(["gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}", "wsgi:app"], env,
                     f"http://127.0.0.1:{port}")
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

"""The HTTP surface outside login: errors everywhere are problem+json; health; OpenAPI."""

from helpers import assert_problem


def test_not_found_and_method_not_allowed(server):
    assert_problem(server.get("/nope"), 404, "not_found")
    response = server.get("/auth/login")
    assert_problem(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_healthz(server):
    response = server.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok", "store": "ok"}


def test_healthz_without_database(app_config, tmp_path, request):
    app_config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path}/missing-dir/db.sqlite"
    from wxauth import create_app
    from helpers import LiveServer
    import requests
    live = LiveServer(create_app(app_config))
    try:
        assert_problem(requests.get(live.url + "/healthz", timeout=10), 503,
                       "database_unavailable")
    finally:
        live.stop()


def test_openapi_document(server):
    response = server.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    assert {"/auth/login", "/profile", "/healthz"} <= set(paths)
    login = paths["/auth/login"]["post"]
    assert set(login["responses"]) >= {"200", "400", "403", "413", "429", "502", "503", "504"}
    assert "invalid_code" in login["responses"]["400"]["description"]
    assert set(paths["/profile"]) >= {"get", "post", "patch"}
    assert "401" in paths["/profile"]["get"]["responses"]
    assert "bearerAuth" in spec["components"]["securitySchemes"]


def test_docs_page(server):
    response = server.get("/docs")
    assert response.status_code == 200
    assert "swagger" in response.text.lower()


def test_unhandled_errors_are_problems_too(app, server, caplog):
    @app.get("/boom")  # registered after the first request is fine for tests
    def boom():
        raise RuntimeError("kaboom")

    body = assert_problem(server.get("/boom"), 500, "internal_error")
    assert "kaboom" not in body["detail"]
    assert "kaboom" in caplog.text  # logged for the operator


def test_healthz_without_redis_is_degraded_not_unready(app_config):
    """Redis not answering: /healthz says degraded (200), so a load balancer keeps the
    instance that still serves every request (README, When things fail)."""
    from wxauth import create_app
    from helpers import LiveServer, free_port
    import flask_migrate
    import requests
    app_config["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    app = create_app(app_config)
    with app.app_context():
        flask_migrate.upgrade()
    live = LiveServer(app)
    try:
        response = requests.get(live.url + "/healthz", timeout=10)
        assert response.status_code == 200
        assert response.json() == {"status": "degraded", "store": "unavailable"}
    finally:
        live.stop()


def test_forwarded_headers_only_from_trusted_proxies(app_config):
    from flask import request
    from wxauth import create_app

    def make(trusted):
        app = create_app({**app_config, "TRUSTED_PROXIES": trusted})
        app.add_url_rule("/whoami", "whoami",
                         lambda: {"ip": request.remote_addr, "scheme": request.scheme})
        return app.test_client()

    headers = {"X-Forwarded-For": "203.0.113.9, 10.0.0.5", "X-Forwarded-Proto": "https"}
    direct = {"REMOTE_ADDR": "198.51.100.7"}  # a client speaking to us directly
    nginx = {"REMOTE_ADDR": "127.0.0.1"}

    untrusting = make(None)
    assert untrusting.get("/whoami", headers=headers, environ_base=nginx).json == {
        "ip": "127.0.0.1", "scheme": "http"}

    trusting = make("127.0.0.1, 10.0.0.0/8")
    # nginx (trusted) in front of a load balancer (10.0.0.5, trusted): the client is .9
    assert trusting.get("/whoami", headers=headers, environ_base=nginx).json == {
        "ip": "203.0.113.9", "scheme": "https"}
    # the same headers from an untrusted peer are ignored
    assert trusting.get("/whoami", headers=headers, environ_base=direct).json == {
        "ip": "198.51.100.7", "scheme": "http"}
    # only the trusted hops are peeled: a spoofed left-most entry is not believed
    spoofed = {"X-Forwarded-For": "1.2.3.4, 203.0.113.9"}
    assert trusting.get("/whoami", headers=spoofed, environ_base=nginx).json["ip"] == "203.0.113.9"


def test_bad_settings_name_the_variable(app_config):
    import pytest
    from config import ConfigError
    from wxauth import create_app
    for key, value in (("TRUSTED_PROXIES", "not-an-ip"), ("SESSION_KEY_ENCRYPTION_KEY", "short"),
                       ("SQLALCHEMY_DATABASE_URI", "::nonsense::")):
        with pytest.raises(ConfigError, match=key.replace("SQLALCHEMY_DATABASE_URI", "DATABASE_URL")):
            create_app({**app_config, key: value})

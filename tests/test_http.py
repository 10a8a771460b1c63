"""The HTTP surface outside login: errors everywhere are problem+json; health; OpenAPI."""

from helpers import assert_problem


def test_not_found_and_method_not_allowed(server):
    assert_problem(server.get("/nope"), 404, "not_found")
    response = server.get("/auth/login")
    assert_problem(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_healthz(server):
    response = server.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


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

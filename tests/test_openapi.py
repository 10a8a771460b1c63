"""The OpenAPI document as API tools read it (Apifox, YApi, Postman; ajv in
miniprogram/test/openapi.test.js): valid OpenAPI 3, ECMAScript-compatible patterns, a
``servers`` entry, an ``operationId`` per operation, plain-text summaries, the problem codes
as an enum with an example per error response, no unused schemas. And ``API_DOCS``, which
turns /openapi.json and /docs off, and the /docs page, which loads nothing from elsewhere."""

from __future__ import annotations

import json
import re

import pytest
import requests
from openapi_spec_validator import validate

import config
from helpers import LiveServer, assert_problem
from wxauth import create_app
from wxauth.errors import PROBLEMS, problem_body

OPERATION_IDS = {
    ("post", "/auth/login"): "login",
    ("post", "/auth/refresh"): "refreshToken",
    ("post", "/auth/logout"): "logout",
    ("get", "/auth/session"): "getSessionState",
    ("get", "/auth/sessions"): "listSessions",
    ("delete", "/auth/sessions/{session_id}"): "endSession",
    ("get", "/auth/verify"): "verifyToken",
    ("get", "/profile"): "getProfile",
    ("post", "/profile"): "updateProfileFromEncryptedData",
    ("patch", "/profile"): "updateProfile",
    ("post", "/profile/phone"): "bindPhoneNumber",
    ("post", "/profile/avatar"): "uploadAvatar",
    ("delete", "/profile"): "deleteAccount",
    ("get", "/profile/export"): "exportPersonalData",
    ("get", "/healthz"): "getHealth",
    ("post", "/oauth/introspect"): "introspectToken",
    ("get", "/oauth/wechat/access_token"): "getWeChatAccessToken",
    ("get", "/.well-known/openid-configuration"): "getDiscoveryDocument",
    ("get", "/.well-known/jwks.json"): "getJwks",
}


@pytest.fixture
def document(server) -> dict:
    response = server.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    return response.json()


def operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method != "parameters":  # (a path's {…} parameters, not an operation)
                yield method, path, operation


def test_the_document_is_valid_openapi(document):
    validate(document)  # openapi-spec-validator: raises on any fault
    assert document["openapi"].startswith("3.0")


def test_servers_is_the_url_the_document_was_fetched_from(server, document):
    assert document["servers"] == [{"url": server.url}]


def test_servers_from_api_base_url(app_config):
    app_config["API_BASE_URL"] = "https://api.example.com/wx/"
    document = create_app(app_config).test_client().get("/openapi.json").get_json()
    assert document["servers"] == [{"url": "https://api.example.com/wx"}]


def test_each_operation_has_its_operation_id(document):
    found = {(method, path): op.get("operationId") for method, path, op in operations(document)}
    assert found == OPERATION_IDS


def test_summaries_are_plain_text(document):
    for method, path, operation in operations(document):
        summary = operation["summary"]
        assert summary and "`" not in summary and "\n" not in summary, (method, path, summary)


def test_problem_codes_are_an_enum_and_each_error_response_has_examples(document):
    problem = document["components"]["schemas"]["Problem"]
    assert problem["properties"]["code"]["enum"] == list(PROBLEMS)
    responses = 0
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            responses += 1
            content = response["content"]["application/problem+json"]
            assert content["schema"] == {"$ref": "#/components/schemas/Problem"}
            listed = re.findall(r"`(\w+)`", response["description"].partition("one of:")[2])
            examples = content["examples"]
            assert list(examples) == listed, (method, path, status)
            for code, example in examples.items():
                assert PROBLEMS[code].status == int(status)
                value = example["value"]
                assert value == problem_body(code, **(
                    {"errors": value["errors"]} if "errors" in value else {}))
                assert example["summary"] == str(PROBLEMS[code].title)
    assert responses >= 40


def test_no_unused_schemas(document):
    schemas = document["components"]["schemas"]
    assert "PaginationMetadata" not in schemas
    text = json.dumps({k: v for k, v in document.items() if k != "components"}) + json.dumps(
        {name: schema for name, schema in schemas.items()})
    for name in schemas:
        assert f'"#/components/schemas/{name}"' in text, f"{name} is not used"


def patterns(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                yield value
            else:
                yield from patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from patterns(value)


def test_patterns_are_anchored_ecmascript(document):
    found = list(patterns(document))
    assert len(found) >= 8
    for pattern in found:
        # \Z, \A, (?P<…>), possessive and inline flags are Python's alone; JavaScript
        # anchors with ^…$ (compiled by miniprogram/test/openapi.test.js)
        assert not re.search(r"\\[AZz]|\(\?P|\(\?[aiLmsux]|[*+?}]\+", pattern), pattern
        assert pattern.startswith("^") and pattern.endswith("$"), pattern


@pytest.mark.parametrize("body", [{"code": "abc\n"}, {"code": "a\x00b"},
                                  {"code": "abc", "appid": "wx\n"}])
def test_a_trailing_newline_is_still_refused(server, body):
    """The patterns end in ``$``, which in Python matches before a final newline: the
    validator must match the whole value (re.fullmatch), as JavaScript does."""
    problem = assert_problem(server.post("/auth/login", json=body), 400, "invalid_request")
    assert set(problem["errors"]) == {"code" if body["code"] != "abc" else "appid"}


def test_a_nickname_needs_a_visible_character(server, emulator):
    token = server.login()["access_token"]
    for nickname in (" \u3000", "\ufeff", "\u2028"):
        problem = assert_problem(server.patch("/profile", token=token,
                                              json={"nickname": nickname}),
                                 400, "invalid_request")
        assert "nickname" in problem["errors"]
    response = server.patch("/profile", token=token, json={"nickname": " 小明\u2028"})
    assert response.status_code == 200 and response.json()["nickname"] == " 小明\u2028"


def test_docs_page_loads_nothing_from_elsewhere(server):
    response = server.get("/docs")  # → /docs/
    assert response.status_code == 200 and "SwaggerUIBundle" in response.text
    assert "jsdelivr" not in response.text and "unpkg" not in response.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', response.text)
    assert {"/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css"} <= set(assets)
    for asset in assets:
        assert asset.startswith("/docs/"), asset
        assert server.get(asset).status_code == 200, asset
    assert '"validatorUrl": null' in response.text  # no badge from validator.swagger.io


def test_api_docs_off(app_config):
    app_config["API_DOCS"] = "0"
    live = LiveServer(create_app(app_config))
    try:
        for path in ("/openapi.json", "/docs", "/docs/", "/docs/swagger-ui-bundle.js"):
            assert_problem(requests.get(live.url + path, timeout=10), 404, "not_found")
    finally:
        live.stop()


@pytest.mark.parametrize("name, value", [("API_DOCS", "maybe"),
                                         ("API_BASE_URL", "api.example.com"),
                                         ("API_BASE_URL", "https://api.example.com/?x=1")])
def test_docs_settings_are_checked(app_config, name, value):
    app_config[name] = value
    with pytest.raises(config.ConfigError, match=name):
        create_app(app_config)

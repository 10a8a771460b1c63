"""API fuzzing: schemathesis generates requests from the served /openapi.json, valid and
invalid, and every answer must be documented (status, content type, schema) and never 5xx."""

from __future__ import annotations

import flask_migrate
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (content_type_conformance, not_a_server_error,
                                 response_schema_conformance, status_code_conformance)

from helpers import LiveServer, test_config
from wxauth import create_app

MAX_EXAMPLES = 500  # per generation mode, across all operations: well under a minute on 2 cores
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def live(tmp_path_factory, emulator):
    tmp = tmp_path_factory.mktemp("fuzz")
    app = create_app(test_config(tmp, emulator.url))
    with app.app_context():
        flask_migrate.upgrade()
    server = LiveServer(app)
    yield server
    server.stop()


def fresh_tokens(live, emulator) -> dict:
    code = emulator.mint()["code"]  # a new made-up user: WeChat limits 100 logins/user/minute
    response = requests.post(live.url + "/auth/login", json={"code": code}, timeout=10)
    response.raise_for_status()
    return response.json()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=lambda m: m.value)
def test_api_conforms_to_its_document(live, emulator, mode):
    schema = schemathesis.openapi.from_url(live.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "POST /auth/login", "POST /auth/refresh", "POST /auth/logout", "GET /profile",
        "POST /profile", "PATCH /profile", "GET /healthz", "GET /auth/session",
        "POST /profile/phone", "POST /profile/avatar"}
    seen: set[str] = set()

    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=schema.as_strategy(mode))
    def check(case):
        headers = None
        if case.operation.definition.raw.get("security"):
            tokens = fresh_tokens(live, emulator)  # a new login each time: logout revokes
            token = tokens["refresh_token" if case.path == "/auth/refresh" else "access_token"]
            headers = {"Authorization": f"Bearer {token}"}
        case.call_and_validate(base_url=live.url, headers=headers, checks=CHECKS)
        seen.add(f"{case.method} {case.path}")

    check()
    assert len(seen) >= 8, seen  # the strategy reached (almost) every operation

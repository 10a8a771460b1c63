"""GET /metrics: Prometheus series that add up across gunicorn's workers, behind a token.

The main test drives gunicorn as shipped (gunicorn.conf.py: 2 gevent workers) with known
traffic and reads /metrics with prometheus_client's own parser: every count must be the
traffic's, summed over both workers (the access lines show both served it).
"""

from __future__ import annotations

import base64
import json
import os
import secrets

import pytest
import requests
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from config import ConfigError
from helpers import (APPID, LiveServer, assert_problem, emulator_stats, free_port,
                     run_threads)
from test_logs import json_lines
from test_resilience_gunicorn import ONE_SHOT, start_gunicorn
from wxauth import create_app
from wxauth.wechat.client import Guard, WeChatClient, WeChatUnavailable, WeChatUnreachable

METRICS_TOKEN = "metrics-" + secrets.token_urlsafe(24)


def scrape(url: str, token: str = METRICS_TOKEN) -> dict[tuple[str, tuple], float]:
    """/metrics parsed: (sample name, sorted labels) → value."""
    response = requests.get(url + "/metrics", headers={"Authorization": f"Bearer {token}",
                                                       **ONE_SHOT}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def concurrently(calls) -> list:
    """Run each zero-argument call in its own thread, all at once; their results in order."""
    results: list = [None] * len(calls)

    def call(i: int) -> None:
        results[i] = calls[i]()

    run_threads(call, range(len(calls)))
    return results


def login_pids(output: str) -> set[int]:
    """The workers whose access lines show a POST /auth/login so far (a line still being
    written is skipped)."""
    pids = set()
    for line in output.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("logger") == "wxauth.request" and entry.get("path") == "/auth/login":
            pids.add(entry["pid"])
    return pids


def test_metrics_add_up_across_two_gunicorn_workers(production_env, emulator):
    returning = 4
    env = dict(production_env, METRICS_TOKEN=METRICS_TOKEN, LOG_FORMAT="json")
    server = start_gunicorn(env)
    url = server.url
    stats_before = emulator_stats(emulator.url)
    try:
        def login(code: str):
            return lambda: requests.post(url + "/auth/login", json={"code": code},
                                         headers=ONE_SHOT, timeout=30)

        # New users in concurrent batches of 4, each held 0.2 s at WeChat, until both
        # workers have served logins: which worker accepts a connection is the kernel's
        # choice, so the number of batches varies; every count below follows `new`.
        emulator.emulator.set_faults(delay=0.2)
        openids: list[str] = []
        while len(login_pids(server.output())) < 2:
            assert len(openids) < 64, "one worker served every login"
            batch = [f"o-metrics-{len(openids) + i}" for i in range(4)]
            first = concurrently([login(emulator.mint(o)["code"]) for o in batch])
            assert [r.status_code for r in first] == [200] * len(batch)
            assert all(r.json()["is_new_user"] for r in first)
            openids += batch
        emulator.emulator.set_faults(delay=0)
        new = len(openids)
        used = emulator.mint(openids[0])["code"]
        again = concurrently([login(emulator.mint(o)["code"]) for o in openids[:returning]]
                             + [login(used), login("not-a-code")])
        assert [r.status_code for r in again] == [200] * returning + [200, 400]
        assert_problem(again[-1], 400, "invalid_code")
        assert_problem(login(used)(), 400, "code_used")

        # encryptedData under another key: decrypt_failed (reason: padding), which asks
        # WeChat's checkSessionKey (an access_token fetch first)
        token = first[1].json()["access_token"]
        garbage = base64.b64encode(os.urandom(64)).decode()
        failed = requests.post(url + "/profile", json={
            "encryptedData": garbage, "iv": base64.b64encode(os.urandom(16)).decode()},
            headers={"Authorization": f"Bearer {token}", **ONE_SHOT}, timeout=30)
        assert_problem(failed, 400, "decrypt_failed")

        # refused without the token, or with another one
        refused = requests.get(url + "/metrics", headers=ONE_SHOT, timeout=10)
        assert_problem(refused, 401, "metrics_token_required")
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        other = METRICS_TOKEN[:-1] + ("y" if METRICS_TOKEN.endswith("x") else "x")
        wrong = requests.get(url + "/metrics", headers={
            "Authorization": "Bearer " + other, **ONE_SHOT}, timeout=10)
        assert_problem(wrong, 401, "metrics_token_required")

        samples = scrape(url)
        stats = emulator_stats(emulator.url)
    finally:
        server.stop()
    output = server.output()
    assert METRICS_TOKEN not in output

    lines = json_lines(output)
    logins = [line for line in lines
              if line["logger"] == "wxauth.request" and line["path"] == "/auth/login"]
    assert len(logins) == new + returning + 3
    assert len({line["pid"] for line in logins}) == 2, "one worker served every login"

    logins_total = "wxauth_logins_total"
    assert value(samples, logins_total, outcome="new") == new
    assert value(samples, logins_total, outcome="returning") == returning + 1
    assert value(samples, logins_total, outcome="invalid_code") == 1
    assert value(samples, logins_total, outcome="code_used") == 1

    requests_total = "wxauth_http_requests_total"
    assert value(samples, requests_total, endpoint="/auth/login", method="POST",
                 status="200") == new + returning + 1
    assert value(samples, requests_total, endpoint="/auth/login", method="POST",
                 status="400") == 2
    assert value(samples, requests_total, endpoint="/profile", method="POST",
                 status="400") == 1
    assert value(samples, requests_total, endpoint="/metrics", method="GET",
                 status="401") == 2
    assert value(samples, "wxauth_http_request_duration_seconds_count", endpoint="/auth/login",
                 method="POST") == new + returning + 3
    assert value(samples, "wxauth_http_request_duration_seconds_bucket", endpoint="/auth/login",
                 method="POST", le="+Inf") == new + returning + 3

    calls = "wxauth_wechat_calls_total"
    assert value(samples, calls, api="code2Session", errcode="0") == new + returning + 1
    assert value(samples, calls, api="code2Session", errcode="40029") == 1
    assert value(samples, calls, api="code2Session", errcode="40163") == 1
    assert value(samples, "wxauth_wechat_call_duration_seconds_count",
                 api="code2Session") == new + returning + 3
    assert value(samples, calls, api="checkSessionKey", errcode="0") == 1

    fetched = stats["stable_token_fetches"] - stats_before["stable_token_fetches"]
    assert fetched >= 1
    assert value(samples, "wxauth_wechat_access_token_fetches_total", appid=APPID,
                 result="ok") == fetched
    assert value(samples, calls, api="getStableAccessToken", errcode="0") == fetched

    assert value(samples, "wxauth_decrypt_failures_total", reason="padding") == 1
    assert value(samples, "wxauth_wechat_circuit_state") == 0
    assert value(samples, "wxauth_wechat_circuit_opened_total") == 0

    decrypt = [line for line in lines if line["message"].startswith("decrypt_failed")]
    assert len(decrypt) == 1 and decrypt[0]["reason"] == "padding", decrypt
    assert decrypt[0]["session_key_valid"] is True
    assert garbage not in output and garbage[:24] not in output
    assert emulator.session_key(openids[1]) not in output


def test_metrics_are_off_without_a_token_and_need_it_when_set(app_config):
    closed = LiveServer(create_app(app_config))
    try:
        assert_problem(requests.get(closed.url + "/metrics", timeout=10), 404, "not_found")
        assert_problem(requests.get(closed.url + "/metrics", timeout=10, headers={
            "Authorization": "Bearer anything-at-all-"}), 404, "not_found")
    finally:
        closed.stop()

    live = LiveServer(create_app(dict(app_config, METRICS_TOKEN=METRICS_TOKEN)))
    try:
        get = lambda **headers: requests.get(live.url + "/metrics", headers=headers, timeout=10)
        assert_problem(get(), 401, "metrics_token_required")
        assert_problem(get(Authorization=METRICS_TOKEN), 401, "metrics_token_required")
        assert_problem(get(Authorization=f"Basic {METRICS_TOKEN}"), 401,
                       "metrics_token_required")
        names = {family.name for family in text_string_to_metric_families(
            get(Authorization=f"Bearer {METRICS_TOKEN}").text)}
        assert {"wxauth_http_requests", "wxauth_logins", "wxauth_wechat_calls",
                "wxauth_decrypt_failures", "wxauth_wechat_circuit_state"} <= names
        paths = requests.get(live.url + "/openapi.json", timeout=10).json()["paths"]
        assert "/metrics" not in paths
    finally:
        live.stop()


def test_a_short_metrics_token_is_refused(app_config):
    with pytest.raises(ConfigError, match="METRICS_TOKEN"):
        create_app(dict(app_config, METRICS_TOKEN="short"))


def test_the_circuit_breaker_state_and_failed_calls_are_exported():
    """A WeChat that refuses connections: each failure is counted as `unreachable`; the
    second opens the circuit (state 2, one more opening), after which calls are not made
    (`unavailable`)."""
    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    calls = "wxauth_wechat_calls_total"
    before = {errcode: sample(calls, api="code2Session", errcode=errcode)
              for errcode in ("unreachable", "unavailable")}
    opened = sample("wxauth_wechat_circuit_opened_total")
    guard = Guard(max_calls=4, failures=2, cooldown=60)
    assert sample("wxauth_wechat_circuit_state") == 0
    client = WeChatClient(APPID, "secret", base_url=f"http://127.0.0.1:{free_port()}",
                          timeout=1, guard=guard)
    for _ in range(2):
        with pytest.raises(WeChatUnreachable):
            client.code2session("a-code")
    assert sample("wxauth_wechat_circuit_state") == 2
    assert sample("wxauth_wechat_circuit_opened_total") == opened + 1
    with pytest.raises(WeChatUnavailable):
        client.code2session("a-code")
    assert sample(calls, api="code2Session", errcode="unreachable") == before["unreachable"] + 2
    assert sample(calls, api="code2Session", errcode="unavailable") == before["unavailable"] + 1
    client.close()

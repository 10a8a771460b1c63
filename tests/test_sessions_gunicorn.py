"""Ending a session and disabling a user take effect at once on every instance: two gunicorn
instances (gevent workers, as shipped) sharing one database and one Redis, real processes
over real HTTP; the operator's commands run as `flask` processes of their own."""

from __future__ import annotations

import requests

from faults import PrivateRedis
from helpers import assert_problem, run
from test_resilience_gunicorn import ONE_SHOT, two_instances

UA = {"User-Agent": "Mozilla/5.0 (Linux; Android 14) MicroMessenger/8.0.50", **ONE_SHOT}


def call(method: str, url: str, path: str, token: str) -> requests.Response:
    return requests.request(method, url + path, timeout=30,
                            headers={"Authorization": f"Bearer {token}", **ONE_SHOT})


def log_in(url: str, emulator, openid: str) -> dict:
    code = emulator.mint(openid)["code"]
    response = requests.post(url + "/auth/login", json={"code": code}, headers=UA, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def flask(env: dict[str, str], *args: str) -> str:
    result = run(["flask", "--app", "wsgi", *args], env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_session_end_and_disable_reach_the_other_instance_at_once(production_env, emulator,
                                                                   tmp_path):
    with PrivateRedis() as redis_server:
        env = dict(production_env, REDIS_URL=redis_server.url)
        with two_instances(env, tmp_path) as (a, b):
            run_scenario(env, a.url, b.url, emulator)


def run_scenario(env, a: str, b: str, emulator) -> None:
    phone, tablet, laptop = (log_in(url, emulator, "o-two-instances") for url in (a, a, b))
    for body in (phone, tablet, laptop):
        assert call("GET", b, "/profile", body["access_token"]).status_code == 200
    listed = call("GET", b, "/auth/sessions", laptop["access_token"]).json()["sessions"]
    laptop_id, tablet_id, phone_id = (s["id"] for s in listed)
    assert listed[0]["current"] and "MicroMessenger" in listed[0]["user_agent"]

    # the API on A ends the phone's session: B refuses it at the next request
    assert call("DELETE", a, f"/auth/sessions/{phone_id}",
                tablet["access_token"]).status_code == 204
    assert_problem(call("GET", b, "/profile", phone["access_token"]), 401, "token_revoked")
    assert_problem(call("POST", b, "/auth/refresh", phone["refresh_token"]), 401,
                   "token_revoked")
    assert call("GET", b, "/profile", tablet["access_token"]).status_code == 200

    # an operator kicks the tablet: both instances refuse it at the next request
    assert tablet_id in flask(env, "users", "sessions", "o-two-instances")
    flask(env, "users", "kick", "o-two-instances", "--session", tablet_id)
    for url in (a, b):
        assert_problem(call("GET", url, "/profile", tablet["access_token"]), 401,
                       "token_revoked")
    assert call("GET", a, "/profile", laptop["access_token"]).status_code == 200

    # an operator disables the user: every token refused on both, logins too
    flask(env, "users", "disable", "o-two-instances", "--reason", "abuse")
    for url in (a, b):
        assert_problem(call("GET", url, "/profile", laptop["access_token"]), 403,
                       "user_disabled")
        code = emulator.mint("o-two-instances")["code"]
        assert_problem(requests.post(url + "/auth/login", json={"code": code}, headers=UA,
                                     timeout=30), 403, "user_disabled")
    assert_problem(call("POST", b, "/auth/refresh", laptop["refresh_token"]), 403,
                   "user_disabled")
    assert "user_disabled" in flask(env, "users", "logins", "o-two-instances")

    flask(env, "users", "enable", "o-two-instances")
    fresh = log_in(b, emulator, "o-two-instances")
    assert call("GET", a, "/profile", fresh["access_token"]).status_code == 200
    assert_problem(call("GET", a, "/profile", laptop["access_token"]), 401, "token_revoked")

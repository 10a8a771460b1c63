"""The phone number at login, in one step: ``POST /auth/login`` with ``phone_code`` beside
``code``, over real HTTP against the emulator, on every database of the matrix."""

from __future__ import annotations

import threading
import time

import pytest

from helpers import assert_problem, emulator_post
from wxauth.extensions import db
from wxauth.services.signals import phone_bound

pytestmark = pytest.mark.databases


def phone_code(server, openid, **options):
    return emulator_post(server.emulator.url, "/dev/phone-code", {"openid": openid, **options})["code"]


def login_with_phone(server, openid, code_of_phone):
    code = server.emulator.mint(openid)["code"]
    return server.post("/auth/login", json={"code": code, "phone_code": code_of_phone})


@pytest.fixture
def bound():
    """The `phone_bound` signals sent during the test: (user id, pure number, at_login)."""
    sent = []

    def receiver(app, user, at_login, **extra):
        sent.append((user.id, user.pure_phone_number, at_login))

    phone_bound.connect(receiver)
    yield sent
    phone_bound.disconnect(receiver)


def test_login_and_phone_in_one_request(server, bound):
    response = login_with_phone(server, "o-pl-ann", phone_code(server, "o-pl-ann",
                                                               phone="13911112222"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["phone"] == {"bound": True}
    assert body["is_new_user"] is True
    assert (body["user"]["phone_number"], body["user"]["pure_phone_number"],
            body["user"]["country_code"]) == ("13911112222", "13911112222", "86")
    profile = server.get("/profile", token=body["access_token"]).json()
    assert profile["pure_phone_number"] == "13911112222"  # stored, not only answered
    assert bound == [(body["user"]["id"], "13911112222", True)]


def test_without_phone_code_the_answer_has_no_phone(server, bound):
    body = server.login("o-pl-plain")
    assert "phone" not in body and body["user"]["phone_number"] is None
    assert bound == []


def test_binding_on_profile_phone_sends_the_signal_too(server, bound):
    body = server.login("o-pl-later")
    response = server.post("/profile/phone", token=body["access_token"],
                           json={"code": phone_code(server, "o-pl-later", phone="13700001111")})
    assert response.status_code == 200, response.text
    assert bound == [(body["user"]["id"], "13700001111", False)]


@pytest.mark.parametrize("options,code,errcode,retry", [
    ({"errcode": 45011}, "wechat_rate_limited", 45011, True),
    ({"busy": 10}, "wechat_busy", -1, True),
    ({"delay": 3}, "wechat_timeout", None, True),
])
def test_a_failing_phone_code_does_not_undo_the_login(server, bound, options, code, errcode,
                                                      retry):
    response = login_with_phone(server, "o-pl-fail", phone_code(server, "o-pl-fail", **options))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["phone"]["bound"] is False and body["phone"]["code"] == code
    assert body["phone"]["detail"]
    assert body["phone"].get("errcode") == errcode
    assert ("retry_after" in body["phone"]) is retry
    assert body["user"]["phone_number"] is None
    profile = server.get("/profile", token=body["access_token"])  # the login stands
    assert profile.status_code == 200 and profile.json()["phone_number"] is None
    assert bound == []


def test_a_used_or_wrong_phone_code_says_why(server):
    used = phone_code(server, "o-pl-used")
    assert login_with_phone(server, "o-pl-used", used).json()["phone"]["bound"] is True
    again = login_with_phone(server, "o-pl-used", used).json()["phone"]
    assert again["bound"] is False and again["code"] == "invalid_code"
    assert "only once" in again["detail"] and again["errcode"] == 40029
    login_code = server.emulator.mint("o-pl-used")["code"]  # a wx.login code, not a phone code
    confused = login_with_phone(server, "o-pl-used", login_code).json()["phone"]
    assert confused["code"] == "invalid_code"
    assert "wx.login code is not a phone code" in confused["detail"]


def test_a_bad_login_code_binds_nothing(server):
    response = server.post("/auth/login", json={"code": "not-a-code",
                                                "phone_code": phone_code(server, "o-pl-bad")})
    assert_problem(response, 400, "invalid_code")


def test_phone_code_is_validated(server):
    code = server.emulator.mint("o-pl-invalid")["code"]
    for bad in ("", "x" * 129, "a\x00b", 7):
        problem = assert_problem(server.post("/auth/login", json={"code": code,
                                                                  "phone_code": bad}),
                                 400, "invalid_request")
        assert "phone_code" in problem["errors"]


def test_no_database_connection_is_held_while_waiting_for_the_phone_number(app, server):
    """The phone call comes after the login's transaction: while WeChat takes its time
    (a 1.5 s delay), the request holds no pooled connection."""
    with app.app_context():
        pool = db.engine.pool
    slow = phone_code(server, "o-pl-slow", delay=1.5)
    result = {}
    worker = threading.Thread(target=lambda: result.update(
        response=login_with_phone(server, "o-pl-slow", slow)))
    worker.start()
    time.sleep(0.8)  # the login is stored; the phone call is waiting
    held = pool.checkedout()
    worker.join()
    assert result["response"].json()["phone"] == {"bound": True}
    assert held == 0


def test_the_openapi_document_describes_phone_code(server):
    spec = server.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert "phone_code" in schemas["Login"]["properties"]
    assert "phone" in schemas["LoginResult"]["properties"]
    assert set(schemas["PhoneBinding"]["properties"]) == {"bound", "code", "detail", "errcode",
                                                          "retry_after"}

"""WeChat server APIs over real HTTP against the emulator: the shared access_token, the phone
number, checkSessionKey, avatar upload and nickname moderation, failure paths included."""

from __future__ import annotations

import base64
import io
import threading

import pytest
import requests
from PIL import Image

from helpers import (APPID, SECRET, EmulatorHandle, LiveServer, ServerClient, assert_problem,
                     emulator_post, emulator_stats, run_threads)
from wxauth.wechat.access_token import AccessTokenManager
from wxauth.infra.store import MemoryStore, RedisStore
from wxauth.wechat import client as wx
from wxauth.wechat.emulator import Emulator

pytestmark = pytest.mark.databases


@pytest.fixture
def own_emulator():
    """An emulator of this test's own, so its counters start at zero."""
    emu = Emulator({APPID: SECRET})
    live = LiveServer(emu)
    yield EmulatorHandle(emu, live.url)
    live.stop()


@pytest.fixture
def wxs(app_config, own_emulator, request):
    """A live server on its own emulator: (ServerClient, EmulatorHandle, app)."""
    app_config["WECHAT_API_BASE"] = own_emulator.url
    app = request.getfixturevalue("app")
    live = LiveServer(app)
    yield ServerClient(live.url, own_emulator), own_emulator, app
    live.stop()


def profile_of(server, token):
    return server.get("/profile", token=token).json()


# --- access_token manager ------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def store(request):
    if request.param == "memory":
        return MemoryStore()
    return RedisStore(request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix"))


def test_one_fetch_for_many_concurrent_callers(own_emulator, store):
    """Eight "workers" (own clients, one shared store) ask at once: one fetch."""
    managers = [AccessTokenManager(wx.WeChatClient(APPID, SECRET, base_url=own_emulator.url),
                                   store) for _ in range(8)]
    barrier, tokens = threading.Barrier(8), []

    def work(manager):
        barrier.wait()
        tokens.append(manager.get())

    run_threads(work, managers)
    assert len(set(tokens)) == 1
    assert emulator_stats(own_emulator.url)["stable_token_fetches"] == 1
    status = managers[0].status()
    assert status["kind"] == "stable" and status["age"] >= 0
    assert 7200 - 300 - 5 < status["expires_in"] <= 7200


def test_classic_tokens_from_separate_caches_collide_but_a_shared_one_does_not(own_emulator):
    """The SDK bug: each process fetching the classic token invalidates the others'."""
    client = wx.WeChatClient(APPID, SECRET, base_url=own_emulator.url)
    a = AccessTokenManager(client, MemoryStore(), stable=False)
    b = AccessTokenManager(client, MemoryStore(), stable=False)  # another process's cache
    phone = own_emulator.url
    token_a = a.get()
    b.get()  # replaces a's token at WeChat
    code = emulator_post(phone, "/dev/phone-code", {"openid": "o-collide"})["code"]
    with pytest.raises(wx.AccessTokenInvalid):
        client.get_phone_number(token_a, code)
    # the manager recovers: invalidates its stale token, fetches once, retries once
    info = a.call(lambda token: client.get_phone_number(token, code))
    assert info.pure_phone_number == "13800138000"
    shared = MemoryStore()
    c = AccessTokenManager(client, shared, stable=False)
    d = AccessTokenManager(client, shared, stable=False)
    assert c.get() == d.get()


def test_40001_mid_flight_refreshes_once_and_retries(own_emulator):
    client = wx.WeChatClient(APPID, SECRET, base_url=own_emulator.url)
    manager = AccessTokenManager(client, MemoryStore())
    first = manager.get()
    emulator_post(own_emulator.url, "/dev/invalidate-tokens")  # someone force-refreshed
    code = emulator_post(own_emulator.url, "/dev/phone-code", {})["code"]
    calls = []

    def api(token):
        calls.append(token)
        return client.get_phone_number(token, code)

    assert manager.call(api).phone_number == "13800138000"
    assert calls[0] == first and calls[1] != first and len(calls) == 2
    assert emulator_stats(own_emulator.url)["stable_token_fetches"] == 2


def test_invalidate_only_drops_the_token_that_failed(own_emulator):
    client = wx.WeChatClient(APPID, SECRET, base_url=own_emulator.url)
    manager = AccessTokenManager(client, MemoryStore())
    current = manager.get()
    assert manager.invalidate("an-older-token") is False  # someone already replaced it
    assert manager.get() == current
    assert manager.invalidate(current) is True


def test_wechat_token_command(wxs):
    server, emulator, app = wxs
    runner = app.test_cli_runner()
    assert "no access_token cached" in runner.invoke(args=["wechat", "token"]).output
    token = server.login("o-cmd")["access_token"]
    server.get("/auth/session", token=token)
    output = runner.invoke(args=["wechat", "token"]).output
    assert f"{APPID}: stable access_token, fetched" in output and "expires in" in output
    with app.app_context():
        from wxauth.services import programs as apps
        cached = apps.get(APPID).tokens._cached()[1]["token"]
    assert cached not in output


# --- phone number ----------------------------------------------------------------------------


def test_phone_by_code(wxs):
    server, emulator, app = wxs
    token = server.login("o-phone")["access_token"]
    code = emulator_post(emulator.url, "/dev/phone-code", {"openid": "o-phone",
                                                            "phone": "13912345678"})["code"]
    response = server.post("/profile/phone", token=token, json={"code": code})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["phone_number"], body["pure_phone_number"], body["country_code"]) == (
        "13912345678", "13912345678", "86")
    again = server.post("/profile/phone", token=token, json={"code": code})  # single-use
    assert_problem(again, 400, "invalid_code")


def test_phone_numeric_country_code(wxs):
    server, emulator, _ = wxs
    token = server.login("o-phone-hk")["access_token"]
    code = emulator_post(emulator.url, "/dev/phone-code",
                         {"phone": "91234567", "country_code": 852})["code"]
    body = server.post("/profile/phone", token=token, json={"code": code}).json()
    assert body["country_code"] == "852" and body["phone_number"] == "+85291234567"


def test_a_login_code_is_not_a_phone_code(wxs):
    server, emulator, _ = wxs
    token = server.login("o-confused")["access_token"]
    login_code = emulator.mint("o-confused")["code"]
    problem = assert_problem(server.post("/profile/phone", token=token, json={"code": login_code}),
                             400, "invalid_code")
    assert "wx.login code is not a phone code" in problem["detail"]
    assert "getPhoneNumber" in problem["detail"]


@pytest.mark.parametrize("options,status,code", [
    ({"errcode": 45011}, 429, "wechat_rate_limited"),
    ({"busy": 10}, 503, "wechat_busy"),
    ({"delay": 3}, 504, "wechat_timeout"),
])
def test_phone_failures_write_nothing(wxs, options, status, code):
    server, emulator, _ = wxs
    token = server.login("o-phone-fail")["access_token"]
    phone_code = emulator_post(emulator.url, "/dev/phone-code", options)["code"]
    assert_problem(server.post("/profile/phone", token=token, json={"code": phone_code}),
                   status, code)
    assert profile_of(server, token)["phone_number"] is None


def test_phone_with_a_token_invalidated_mid_flight(wxs):
    server, emulator, _ = wxs
    token = server.login("o-phone-40001")["access_token"]
    first = emulator_post(emulator.url, "/dev/phone-code", {})["code"]
    assert server.post("/profile/phone", token=token, json={"code": first}).status_code == 200
    emulator_post(emulator.url, "/dev/invalidate-tokens")
    second = emulator_post(emulator.url, "/dev/phone-code", {"phone": "13700000000"})["code"]
    response = server.post("/profile/phone", token=token, json={"code": second})
    assert response.status_code == 200, response.text
    assert response.json()["pure_phone_number"] == "13700000000"
    assert emulator_stats(emulator.url)["stable_token_fetches"] == 2


def test_phone_old_style_encrypted(wxs):
    server, emulator, _ = wxs
    token = server.login("o-phone-old")["access_token"]
    detail = emulator.encrypt("o-phone-old", {"phoneNumber": "13800001111",
                                              "purePhoneNumber": "13800001111",
                                              "countryCode": "86"})
    response = server.post("/profile/phone", token=token,
                           json={"encryptedData": detail["encryptedData"], "iv": detail["iv"]})
    assert response.status_code == 200, response.text
    assert response.json()["phone_number"] == "13800001111"
    user_info = emulator.encrypt("o-phone-old", {"nickName": "not a phone"})
    assert_problem(server.post("/profile/phone", token=token, json=user_info), 400,
                   "invalid_request")
    other_app = emulator.encrypt("o-phone-old", {"phoneNumber": "1", "purePhoneNumber": "1",
                                                 "countryCode": "86"},
                                 watermark_appid="wx0000000000000000")
    assert_problem(server.post("/profile/phone", token=token, json=other_app), 400,
                   "watermark_mismatch")


@pytest.mark.parametrize("body", [{}, {"code": ""}, {"encryptedData": "AAAA"}, {"code": 5}])
def test_phone_bad_input(wxs, body):
    server, _, _ = wxs
    token = server.login("o-phone-bad")["access_token"]
    assert_problem(server.post("/profile/phone", token=token, json=body), 400, "invalid_request")


# --- checkSessionKey ----------------------------------------------------------------------------


def test_session_check(wxs):
    server, emulator, _ = wxs
    token = server.login("o-session")["access_token"]
    assert server.get("/auth/session", token=token).json() == {"session_key_valid": True}
    emulator.mint("o-session")  # minting alone changes nothing…
    code = emulator.mint("o-session")["code"]
    # …but a wx.login whose code reaches WeChat rotates the key behind our back
    requests.get(emulator.url + "/sns/jscode2session", params={
        "appid": APPID, "secret": SECRET, "js_code": code, "grant_type": "authorization_code"},
        timeout=10)
    assert server.get("/auth/session", token=token).json() == {"session_key_valid": False}


def test_checksession_signature_is_hmac_of_the_base64_text(own_emulator):
    import hashlib
    import hmac
    client = wx.WeChatClient(APPID, SECRET, base_url=own_emulator.url)
    manager = AccessTokenManager(client, MemoryStore())
    client.code2session(own_emulator.mint("o-sig")["code"])
    key = own_emulator.session_key("o-sig")
    assert manager.call(lambda t: client.check_session_key(t, "o-sig", key)) is True
    wrong = base64.b64encode(base64.b64decode(key)[::-1]).decode()
    assert manager.call(lambda t: client.check_session_key(t, "o-sig", wrong)) is False
    # the signature WeChat expects: HMAC-SHA256 keyed with the base64 *text*, empty message
    expected = hmac.new(key.encode(), b"", hashlib.sha256).hexdigest()
    answer = requests.get(own_emulator.url + "/wxa/checksession", params={
        "access_token": manager.get(), "openid": "o-sig", "signature": expected,
        "sig_method": "hmac_sha256"}, timeout=10).json()
    assert answer["errcode"] == 0


def test_decrypt_failed_says_whether_the_key_is_stale(wxs):
    server, emulator, _ = wxs
    token = server.login("o-stale")["access_token"]
    old = emulator.encrypt("o-stale", {"nickName": "Old"})
    server.login("o-stale")  # our key is current again, the data is from before
    problem = assert_problem(server.post("/profile", token=token, json=old), 400,
                             "decrypt_failed")
    assert problem["session_key_valid"] is True and "still current" in problem["detail"]
    # WeChat rotated the key without us: a login code exchanged elsewhere
    code = emulator.mint("o-stale")["code"]
    requests.get(emulator.url + "/sns/jscode2session", params={
        "appid": APPID, "secret": SECRET, "js_code": code, "grant_type": "authorization_code"},
        timeout=10)
    fresh = emulator.encrypt("o-stale", {"nickName": "Fresh"})
    problem = assert_problem(server.post("/profile", token=token, json=fresh), 400,
                             "decrypt_failed")
    assert problem["session_key_valid"] is False and "stale" in problem["detail"]


# --- avatar -----------------------------------------------------------------------------------------


def image_bytes(fmt: str, size=(1200, 900), exif: bool = False) -> bytes:
    image = Image.new("RGB", size, (200, 30, 30))
    out = io.BytesIO()
    options = {}
    if exif:
        data = Image.Exif()
        data[0x010F] = "SecretCameraMaker"  # Make
        options["exif"] = data
    image.save(out, fmt, **options)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_avatar_upload(wxs, fmt):
    server, _, _ = wxs
    token = server.login("o-avatar")["access_token"]
    data = image_bytes(fmt, exif=fmt == "JPEG") + b"<?php trailing payload ?>"
    response = server.post("/profile/avatar", token=token,
                           files={"file": ("tmp_abc.txt", data, "application/octet-stream")})
    assert response.status_code == 200, response.text
    url = response.json()["avatar_url"]
    assert url.startswith(server.url + "/media/avatars/")
    served = requests.get(url, timeout=10)
    assert served.status_code == 200
    stored = Image.open(io.BytesIO(served.content))
    assert stored.format == fmt and max(stored.size) == 640
    assert b"SecretCameraMaker" not in served.content and b"<?php" not in served.content
    assert profile_of(server, token)["avatar_url"] == url


@pytest.mark.parametrize("payload", [
    b"not an image at all",
    b"GIF89a" + b"\x00" * 100,
    image_bytes("BMP", size=(10, 10)),
    image_bytes("PNG", size=(10, 10))[:40],  # truncated
])
def test_avatar_rejects_non_images(wxs, payload):
    server, _, _ = wxs
    token = server.login("o-avatar-bad")["access_token"]
    response = server.post("/profile/avatar", token=token,
                           files={"file": ("avatar.jpg", payload, "image/jpeg")})
    assert_problem(response, 400, "invalid_image")
    assert profile_of(server, token)["avatar_url"] is None


def test_avatar_size_limit_and_missing_file(wxs, app_config):
    server, _, app = wxs
    token = server.login("o-avatar-big")["access_token"]
    big = b"\xff\xd8\xff" + b"0" * (app.config["AVATAR_MAX_BYTES"] + 100)
    assert_problem(server.post("/profile/avatar", token=token, files={"file": ("a.jpg", big)}),
                   413, "payload_too_large")
    assert_problem(server.post("/profile/avatar", token=token, files={"other": ("a.jpg", b"x")}),
                   400, "invalid_request")


def test_decompression_bomb_is_refused(wxs):
    server, _, app = wxs
    token = server.login("o-bomb")["access_token"]
    bomb = image_bytes("PNG", size=(6000, 5000))  # 30 Mpx of one colour: tiny file
    assert len(bomb) < app.config["AVATAR_MAX_BYTES"]
    assert_problem(server.post("/profile/avatar", token=token, files={"file": ("b.png", bomb)}),
                   400, "invalid_image")


# --- nickname moderation -------------------------------------------------------------------------


@pytest.fixture
def moderated(app_config, own_emulator, request):
    app_config.update(WECHAT_API_BASE=own_emulator.url, WECHAT_CONTENT_CHECK=True)
    app = request.getfixturevalue("app")
    live = LiveServer(app)
    yield ServerClient(live.url, own_emulator)
    live.stop()


def test_nickname_moderation(moderated, caplog):
    server = moderated
    token = server.login("o-nick")["access_token"]
    assert server.patch("/profile", token=token, json={"nickname": "小明"}).status_code == 200
    problem = assert_problem(server.patch("/profile", token=token,
                                          json={"nickname": "违规昵称"}), 422, "content_rejected")
    assert "another" in problem["detail"]
    assert profile_of(server, token)["nickname"] == "小明"
    caplog.set_level("WARNING")
    assert server.patch("/profile", token=token,
                        json={"nickname": "please review me"}).status_code == 200
    assert "pending review" in caplog.text
    assert server.patch("/profile", token=token, json={"city": "risky town"}).status_code == 200


def test_moderation_is_off_by_default(wxs):
    server, emulator, _ = wxs
    token = server.login("o-nick-off")["access_token"]
    assert server.patch("/profile", token=token, json={"nickname": "违规"}).status_code == 200
    assert emulator_stats(emulator.url)["api_calls"] == 0

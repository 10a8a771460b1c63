"""GET/POST/PATCH /profile over real HTTP, with data encrypted by the emulator."""

import base64
import time

import pytest

from helpers import APPID, OTHER_APPID, assert_problem
from wxauth.wechat import crypto

pytestmark = pytest.mark.databases

USER_INFO = {"nickName": "Alice 🐱小猫", "avatarUrl": "https://thirdwx.qlogo.cn/mmopen/alice/132",
             "gender": 2, "country": "China", "province": "Guangdong", "city": "Shenzhen",
             "language": "zh_CN"}


@pytest.fixture
def alice(server):
    """A logged-in user: (openid, token)."""
    return "o-alice", server.login("o-alice")["access_token"]


def post_profile(server, token, detail):
    return server.post("/profile", token=token, json=detail)


def test_the_session_key_comes_with_the_user_in_one_query(app, server, alice):
    """Views that decrypt load the user with the (deferred) session_key: one SELECT of users,
    not a second one for the key (data sent again, unchanged: nothing written or reloaded);
    GET /profile does not read the key at all."""
    from sqlalchemy import event

    from wxauth.extensions import db

    openid, token = alice
    detail = server.emulator.encrypt(openid, USER_INFO)
    assert post_profile(server, token, detail).status_code == 200  # the change is written
    with app.app_context():
        engine = db.engine
    statements = []

    def record(conn, cursor, statement, *args):
        statements.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    try:
        assert post_profile(server, token, detail).status_code == 200
        post_selects = [s for s in statements if s.startswith("SELECT") and "FROM users" in s]
        statements.clear()
        assert server.get("/profile", token=token).status_code == 200
        get_selects = [s for s in statements if s.startswith("SELECT") and "FROM users" in s]
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(post_selects) == 1 and "users.session_key" in post_selects[0]
    assert len(get_selects) == 1 and "users.session_key" not in get_selects[0]


def test_decrypts_user_info_and_updates_profile(server, alice):
    openid, token = alice
    detail = server.emulator.encrypt(openid, USER_INFO)
    response = post_profile(server, token, detail)  # e.detail as-is, errMsg/userInfo included
    assert response.status_code == 200, response.text
    profile = response.json()
    assert profile["nickname"] == "Alice 🐱小猫"
    assert profile["avatar_url"] == USER_INFO["avatarUrl"]
    assert (profile["gender"], profile["country"], profile["province"], profile["city"],
            profile["language"]) == (2, "China", "Guangdong", "Shenzhen", "zh_CN")
    assert profile["updated_at"] >= profile["created_at"]
    assert server.get("/profile", token=token).json() == profile
    assert "session_key" not in response.text


def test_only_encrypted_data_and_iv_are_needed(server, alice):
    openid, token = alice
    detail = server.emulator.encrypt(openid, USER_INFO)
    response = post_profile(server, token, {"encryptedData": detail["encryptedData"],
                                            "iv": detail["iv"]})
    assert response.status_code == 200


def test_plus_turned_into_space_is_repaired(server, alice):
    openid, token = alice
    key = server.emulator.session_key(openid)
    payload = {**USER_INFO, "watermark": {"appid": APPID, "timestamp": int(time.time())}}
    iv = b"\xfb\xef" + bytes(14)  # base64 "++8A…": '+' first, where a strip() would eat it
    for n in range(100):  # a ciphertext with '+' in it too
        encrypted, _ = crypto.encrypt(key, {**payload, "n": n}, iv)
        if "+" in base64.b64encode(encrypted).decode():
            break
    detail = {"encryptedData": base64.b64encode(encrypted).decode(),
              "iv": base64.b64encode(iv).decode()}
    assert detail["iv"].startswith("++") and "+" in detail["encryptedData"]
    mangled = {k: v.replace("+", " ") for k, v in detail.items()}
    assert post_profile(server, token, mangled).status_code == 200


def test_anonymous_placeholders_do_not_overwrite(server, alice):
    openid, token = alice
    post_profile(server, token, server.emulator.encrypt(openid, USER_INFO))
    anonymous = {"nickName": "微信用户", "gender": 0, "language": "zh_CN", "city": "",
                 "province": "", "country": "",
                 "avatarUrl": "https://thirdwx.qlogo.cn/mmopen/vi_32/POgEwh4mIHO4nibH0KlMECNjjGxQUq24ZEaGT4poC6icRiccVGKSyXwibcPq4BWmiaIGuG1icwxaQX6grC9VemZoJ8rg/132"}
    response = post_profile(server, token, server.emulator.encrypt(openid, anonymous))
    assert response.status_code == 200
    profile = response.json()
    assert profile["nickname"] == "Alice 🐱小猫"
    assert profile["avatar_url"] == USER_INFO["avatarUrl"]
    assert (profile["gender"], profile["city"]) == (2, "Shenzhen")


def test_stale_session_key_after_a_new_login(server, alice):
    openid, token = alice
    detail = server.emulator.encrypt(openid, USER_INFO)  # fetched before…
    server.login(openid)  # …a wx.login that rotated the session_key
    body = assert_problem(post_profile(server, token, detail), 400, "decrypt_failed")
    assert "wx.login" in body["detail"]
    assert server.get("/profile", token=token).json()["nickname"] is None  # nothing written


def test_signature_checked_when_sent(server, alice):
    openid, token = alice
    detail = server.emulator.encrypt(openid, USER_INFO)
    detail["signature"] = "0" * 40
    assert_problem(post_profile(server, token, detail), 400, "signature_mismatch")
    detail.pop("signature")
    assert_problem(post_profile(server, token, detail), 400, "invalid_request")  # rawData alone


def test_watermark_other_app(server, alice):
    openid, token = alice
    detail = server.emulator.encrypt(openid, USER_INFO, watermark_appid=OTHER_APPID)
    assert_problem(post_profile(server, token, detail), 400, "watermark_mismatch")


def test_watermark_too_old(server, alice):
    openid, token = alice
    detail = server.emulator.encrypt(openid, USER_INFO, timestamp=int(time.time()) - 601)
    assert_problem(post_profile(server, token, detail), 400, "watermark_expired")
    fresh = server.emulator.encrypt(openid, USER_INFO, timestamp=int(time.time()) - 500)
    assert post_profile(server, token, fresh).status_code == 200


def test_watermark_age_check_can_be_disabled(app_config, request):
    app_config["WECHAT_WATERMARK_MAX_AGE"] = 0
    server = request.getfixturevalue("server")
    token = server.login("o-old")["access_token"]
    detail = server.emulator.encrypt("o-old", USER_INFO, timestamp=1477314187)
    assert post_profile(server, token, detail).status_code == 200


def test_bad_padding_and_unusable_json_with_the_right_key(server, alice):
    openid, token = alice
    key = server.emulator.session_key(openid)
    from Crypto.Cipher import AES
    from Crypto.Util.Padding import pad
    raw_key, iv = crypto.session_key_bytes(key), bytes(range(16))
    unpaired = pad(b'{"nickName": "\\ud800"}', 16)  # JSON, but no text can hold it
    for plaintext in (b'{"a":1}' + b"\x00" * 9, b"not json at all!" + b"\x10" * 16, unpaired):
        ciphertext = AES.new(raw_key, AES.MODE_CBC, iv).encrypt(plaintext)
        detail = {"encryptedData": base64.b64encode(ciphertext).decode(),
                  "iv": base64.b64encode(iv).decode()}
        assert_problem(post_profile(server, token, detail), 400, "decrypt_failed")


@pytest.mark.parametrize("detail", [
    {},
    {"encryptedData": "AAAA"},
    {"encryptedData": "not base64!!", "iv": "AAAAAAAAAAAAAAAAAAAAAA=="},
    {"encryptedData": "A" * 64, "iv": "AAAA"},  # iv of 3 bytes
    {"encryptedData": "A" * 64, "iv": 16},
    {"encryptedData": ["A"], "iv": "AAAAAAAAAAAAAAAAAAAAAA=="},
    {"encryptedData": "A" * 30000, "iv": "AAAAAAAAAAAAAAAAAAAAAA=="},  # oversized
])
def test_bad_input(server, alice, detail):
    _, token = alice
    assert_problem(post_profile(server, token, detail), 400, "invalid_request")


def test_patch_profile(server, alice):
    _, token = alice
    response = server.patch("/profile", token=token, json={
        "nickname": "小明", "avatar_url": "https://cdn.example.com/a.png", "gender": 1,
        "city": "Hangzhou"})
    assert response.status_code == 200, response.text
    profile = response.json()
    assert (profile["nickname"], profile["gender"], profile["city"]) == ("小明", 1, "Hangzhou")
    assert server.get("/profile", token=token).json() == profile


@pytest.mark.parametrize("body", [
    {"nickname": ""},
    {"nickname": "   "},
    {"nickname": "x" * 65},
    {"nickname": 5},
    {"nickname": "a\x00b"},
    {"nickname": "\ud800"},  # an unpaired surrogate: no database or UTF-8 text holds it
    {"nickname": "x", "\udfff": 1},
    {"city": "line\n"},
    {"avatar_url": "wxfile://tmp_abc.jpg"},  # chooseAvatar's local path: upload it first
    {"avatar_url": "javascript:alert(1)"},
    {"gender": 3},
    {"gender": "1"},
    {"nickName": "typo"},
    ["nickname"],
])
def test_patch_validation(server, alice, body):
    _, token = alice
    response = server.patch("/profile", token=token, json=body)
    problem = assert_problem(response, 400, "invalid_request")
    assert problem["errors"]
    assert server.get("/profile", token=token).json()["nickname"] is None


def test_profile_endpoints_need_a_token(server):
    for method in ("GET", "POST", "PATCH"):
        assert_problem(server.request(method, "/profile", json={}), 401,
                       "authorization_required")

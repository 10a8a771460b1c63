"""WeChatClient against the emulator over real HTTP on loopback: results, errcodes, faults."""

import logging
from types import SimpleNamespace

import pytest
import requests

from helpers import APPID, SECRET, free_port
from wxauth.wechat import client as wx
from wxauth.wechat.client import WeChatClient


@pytest.fixture
def wechat(emulator):
    c = WeChatClient(APPID, SECRET, base_url=emulator.url, timeout=1.0, busy_backoff=0.01)
    yield c
    c.close()


def test_code2session_success(emulator, wechat):
    minted = emulator.mint("o-client-1", unionid="u-client-1")
    result = wechat.code2session(minted["code"])
    assert result.openid == "o-client-1"
    assert result.unionid == "u-client-1"
    assert result.session_key == emulator.session_key("o-client-1")
    assert result.session_key not in repr(result)


def test_emulator_answers_text_plain_without_errcode(emulator):
    code = emulator.mint("o-client-raw")["code"]
    response = requests.get(f"{emulator.url}/sns/jscode2session", params={
        "appid": APPID, "secret": SECRET, "js_code": code, "grant_type": "authorization_code"})
    assert response.headers["Content-Type"].startswith("text/plain")
    body = response.json()
    assert "errcode" not in body and body["openid"] == "o-client-raw"


def test_emulator_refuses_an_unpaired_surrogate_and_keeps_serving(emulator):
    for body in ('{"openid": "o\\ud800"}', '{"openid": "o", "unionid": "\\udc00"}'):
        response = requests.post(f"{emulator.url}/dev/code", data=body, timeout=5)
        assert response.status_code == 400 and response.json()["errcode"] == 400
    assert emulator.mint("o-after-surrogate")["openid"] == "o-after-surrogate"


def test_session_key_rotates_per_exchange(emulator, wechat):
    first = wechat.code2session(emulator.mint("o-rotate")["code"]).session_key
    second = wechat.code2session(emulator.mint("o-rotate")["code"]).session_key
    assert first != second


def test_code_is_single_use(emulator, wechat):
    code = emulator.mint("o-once")["code"]
    wechat.code2session(code)
    with pytest.raises(wx.CodeUsed) as info:
        wechat.code2session(code)
    assert info.value.errcode == 40163


@pytest.mark.parametrize("options,exc,errcode", [
    ({"errcode": 40029}, wx.InvalidCode, 40029),
    ({"blocked": True}, wx.UserBlocked, 40226),
    ({"errcode": 45011}, wx.WeChatRateLimited, 45011),
    ({"errcode": 40999}, wx.WeChatAPIError, 40999),
    ({"busy": 10}, wx.WeChatBusy, -1),
])
def test_errcodes_become_typed_exceptions(emulator, wechat, options, exc, errcode):
    code = emulator.mint(**options)["code"]
    with pytest.raises(exc) as info:
        wechat.code2session(code)
    assert type(info.value) is exc
    assert info.value.errcode == errcode


def test_unknown_code_is_invalid(wechat):
    with pytest.raises(wx.InvalidCode):
        wechat.code2session("no-such-code")


def test_busy_is_retried_with_backoff(emulator, wechat):
    code = emulator.mint("o-busy", busy=2)["code"]  # -1 twice, then success
    assert wechat.code2session(code).openid == "o-busy"


def test_rate_limit_after_100_exchanges_per_minute(emulator, wechat):
    for _ in range(100):
        wechat.code2session(emulator.mint("o-hammer")["code"])
    with pytest.raises(wx.WeChatRateLimited):
        wechat.code2session(emulator.mint("o-hammer")["code"])


def test_wrong_secret_is_an_api_error_without_the_secret(emulator):
    c = WeChatClient(APPID, "wrong-secret-value", base_url=emulator.url)
    with pytest.raises(wx.WeChatAPIError) as info:
        c.code2session(emulator.mint()["code"])
    assert info.value.errcode == 40125
    assert "wrong-secret-value" not in str(info.value)


@pytest.mark.parametrize("fault,exc", [("html", wx.WeChatBadResponse),
                                       ("http_500", wx.WeChatBadResponse)])
def test_bad_answers(emulator, wechat, fault, exc):
    with pytest.raises(exc):
        wechat.code2session(emulator.mint(fault=fault)["code"])


def test_timeout(emulator, wechat):
    with pytest.raises(wx.WeChatTimeout) as info:
        wechat.code2session(emulator.mint(delay=2.5)["code"])
    assert SECRET not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_calls_go_through_the_configured_proxy(emulator):
    """WECHAT_PROXY: the request goes to the proxy (here the emulator, which serves the
    absolute-form request line), never to the unresolvable API host itself."""
    c = WeChatClient(APPID, SECRET, base_url="http://api.wechat.invalid", proxy=emulator.url,
                     timeout=2)
    session = c.code2session(emulator.mint(openid="o-via-proxy")["code"])
    assert session.openid == "o-via-proxy"
    direct = WeChatClient(APPID, SECRET, base_url="http://api.wechat.invalid", timeout=2)
    with pytest.raises(wx.WeChatUnreachable):
        direct.code2session(emulator.mint()["code"])


def test_unreachable_never_shows_the_secret(caplog):
    c = WeChatClient(APPID, SECRET, base_url=f"http://127.0.0.1:{free_port()}", timeout=1)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(wx.WeChatUnreachable) as info:
        c.code2session("some-login-code")
    text = str(info.value) + repr(info.value) + repr(c)
    assert SECRET not in text and "some-login-code" not in text
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert caplog.records and SECRET not in caplog.text
    assert "some-login-code" not in caplog.text


def test_urllib3_debug_log_is_redacted(emulator, wechat, caplog):
    caplog.set_level(logging.DEBUG, logger="urllib3")
    wechat.code2session(emulator.mint()["code"])
    # (the emulator's own access log is WeChat's side, not ours: look at urllib3's lines)
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("urllib3"))
    assert "jscode2session" in ours  # the line is there…
    assert SECRET not in ours  # …without the AppSecret
    assert "secret=***" in ours


def test_malformed_success_answers_are_bad_responses():
    class Canned:  # a transport with urllib3's request() signature
        def __init__(self, body):
            self.body = body

        def request(self, method, url, **options):
            return SimpleNamespace(status=200, headers={}, data=self.body)

    for body in (b'{"openid": "x"}', b'{"openid": "x", "session_key": "bm90MTZieXRlcw=="}',
                 b"[1]", b'{"errcode": "oops"}', b'{"openid": 5, "session_key": "x"}',
                 b'{"openid": "o\\ud800", "session_key": "AAAAAAAAAAAAAAAAAAAAAA=="}'):
        c = WeChatClient(APPID, SECRET, base_url="http://canned", http=Canned(body))
        with pytest.raises(wx.WeChatBadResponse):
            c.code2session("code")

"""Property tests (hypothesis): the crypto round-trips any JSON object, and no corruption of
key, iv, ciphertext or request body makes anything but a clean error."""

import base64
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import APPID
from wxauth.wechat import crypto

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=12), json_values, max_size=6)
keys = st.binary(min_size=16, max_size=16).map(lambda b: base64.b64encode(b).decode())


@given(payload=json_objects, key=keys, iv=st.binary(min_size=16, max_size=16))
def test_encrypt_then_decrypt_round_trips(payload, key, iv):
    encrypted, used_iv = crypto.encrypt(key, payload, iv)
    assert crypto.decrypt(key, encrypted, used_iv) == payload


@given(payload=json_objects, key=keys, iv=st.binary(min_size=16, max_size=16),
       target=st.sampled_from(["key", "iv", "ciphertext", "truncate", "extend"]),
       position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_corruption_is_a_decrypt_error_or_a_plain_object(payload, key, iv, target, position, flip):
    encrypted, _ = crypto.encrypt(key, payload, iv)
    raw_key = bytearray(base64.b64decode(key))
    iv, encrypted = bytearray(iv), bytearray(encrypted)
    victim = {"key": raw_key, "iv": iv, "ciphertext": encrypted}.get(target)
    if victim is not None:
        victim[position % len(victim)] ^= flip
    elif target == "truncate":
        del encrypted[position % len(encrypted):]
    else:
        encrypted += bytes([flip]) * (position % 40 + 1)
    try:
        result = crypto.decrypt(base64.b64encode(bytes(raw_key)).decode(), bytes(encrypted),
                                bytes(iv))
    except crypto.DecryptError:
        return
    # CBC has no integrity check: a flipped iv bit can still give valid JSON (WeChat's
    # format relies on the watermark). It must then at least be a JSON object.
    assert isinstance(result, dict)


@pytest.fixture
def logged_in(server):
    openid = "o-fuzz"
    token = server.login(openid)["access_token"]
    return server, token, server.emulator.session_key(openid)


base64ish = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode()),
    st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode().replace("+", " ")),
)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(encrypted=base64ish, iv=base64ish, extra=st.dictionaries(
    st.sampled_from(["rawData", "signature", "errMsg"]), st.text(max_size=50) | st.integers(),
    max_size=2))
def test_any_profile_body_is_a_clean_4xx(logged_in, encrypted, iv, extra):
    server, token, _ = logged_in
    response = server.post("/profile", token=token,
                           json={"encryptedData": encrypted, "iv": iv, **extra})
    assert response.status_code == 400, response.text
    assert response.json()["code"] in ("invalid_request", "decrypt_failed")


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=json_objects, target=st.sampled_from(["iv", "ciphertext", "truncate"]),
       position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_corrupted_real_data_never_5xx(logged_in, payload, target, position, flip):
    server, token, session_key = logged_in
    data = {**payload, "watermark": {"appid": APPID, "timestamp": int(time.time())}}
    encrypted, iv = crypto.encrypt(session_key, data)
    encrypted, iv = bytearray(encrypted), bytearray(iv)
    if target == "truncate":
        del encrypted[position % len(encrypted):]
    else:
        victim = iv if target == "iv" else encrypted
        victim[position % len(victim)] ^= flip
    response = server.post("/profile", token=token, json={
        "encryptedData": base64.b64encode(bytes(encrypted)).decode(),
        "iv": base64.b64encode(bytes(iv)).decode()})
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert response.json()["code"] in ("invalid_request", "decrypt_failed",
                                           "watermark_mismatch", "watermark_expired")

"""Unit tests of the open-data crypto against WeChat's published sample and bad inputs."""

import base64
import json

import pytest

from wxauth.wechat import crypto, jsontext

# WeChat's own sample from the "open data decryption" docs (WXBizDataCrypt demo).
SAMPLE_APPID = "wx4f4bc4dec97d474b"
SAMPLE_SESSION_KEY = "tiihtNczf5v6AKRyjwEUhQ=="
SAMPLE_IV = "r7BXXKkLb8qrSNn05n0qiA=="
SAMPLE_ENCRYPTED = (
    "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oN"
    "PdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtp"
    "yxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRA"
    "Uid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6"
    "nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv8"
    "5IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew=="
)
SAMPLE_TIMESTAMP = 1477314187


def sample():
    return base64.b64decode(SAMPLE_ENCRYPTED), base64.b64decode(SAMPLE_IV)


def test_decrypts_wechat_sample():
    data = crypto.decrypt(SAMPLE_SESSION_KEY, *sample())
    assert data["openId"] == "oGZUI0egBJY1zhBYw2KhdUfwVJJE"
    assert data["nickName"] == "Band"
    assert data["gender"] == 1
    assert data["city"] == "Guangzhou"
    assert data["unionId"] == "ocMvos6NjeKLIBqg5Mr9QjxrP1FA"
    assert data["watermark"] == {"timestamp": SAMPLE_TIMESTAMP, "appid": SAMPLE_APPID}


def test_sample_watermark_checks_with_a_settable_clock():
    data = crypto.decrypt(SAMPLE_SESSION_KEY, *sample())
    crypto.check_watermark(data, SAMPLE_APPID, max_age=600, now=SAMPLE_TIMESTAMP + 599)
    crypto.check_watermark(data, SAMPLE_APPID, max_age=0)  # 0 disables the age check
    with pytest.raises(crypto.WatermarkExpired):
        crypto.check_watermark(data, SAMPLE_APPID, max_age=600, now=SAMPLE_TIMESTAMP + 601)
    with pytest.raises(crypto.WatermarkExpired):  # WeChat's sample is from 2016
        crypto.check_watermark(data, SAMPLE_APPID, max_age=600)
    with pytest.raises(crypto.WatermarkMismatch):
        crypto.check_watermark(data, "wx0000000000000000", max_age=0)
    with pytest.raises(crypto.WatermarkMismatch):
        crypto.check_watermark({"nickName": "x"}, SAMPLE_APPID, max_age=0)


def test_round_trip_with_cjk_and_emoji():
    key = base64.b64encode(bytes(range(16))).decode()
    payload = {"nickName": "🐱小猫", "watermark": {"appid": "wx1234567890abcdef", "timestamp": 1}}
    encrypted, iv = crypto.encrypt(key, payload)
    assert len(iv) == 16 and len(encrypted) % 16 == 0
    assert crypto.decrypt(key, encrypted, iv) == payload


def test_wrong_key_fails_cleanly():
    other = base64.b64encode(b"0123456789abcdef").decode()
    with pytest.raises(crypto.DecryptError):
        crypto.decrypt(other, *sample())


@pytest.mark.parametrize("mangle", [
    lambda ct, iv: (ct[:-1], iv),                   # not whole blocks
    lambda ct, iv: (ct[:-16], iv),                  # last block missing: bad padding
    lambda ct, iv: (b"", iv),                       # empty
    lambda ct, iv: (ct, iv[:15]),                   # short iv
    lambda ct, iv: (ct, bytes(16)),                 # wrong iv: first block garbage, not JSON
])
def test_damaged_input_fails_cleanly(mangle):
    with pytest.raises(crypto.DecryptError):
        crypto.decrypt(SAMPLE_SESSION_KEY, *mangle(*sample()))


def test_strict_pkcs7_padding():
    key = SAMPLE_SESSION_KEY
    from Crypto.Cipher import AES
    raw = crypto.session_key_bytes(key)
    iv = bytes(16)
    # valid JSON, but padding bytes 01 02 03 instead of 03 03 03
    body = b'{"a":"bcdefghij"}'[:13] + b"\x01\x02\x03"
    ciphertext = AES.new(raw, AES.MODE_CBC, iv).encrypt(body)
    with pytest.raises(crypto.DecryptError):
        crypto.decrypt(key, ciphertext, iv)


def test_not_an_object_fails():
    key = SAMPLE_SESSION_KEY
    from Crypto.Cipher import AES
    from Crypto.Util.Padding import pad
    raw = crypto.session_key_bytes(key)
    ciphertext = AES.new(raw, AES.MODE_CBC, bytes(16)).encrypt(pad(b"[1,2,3]", 16))
    with pytest.raises(crypto.DecryptError):
        crypto.decrypt(key, ciphertext, bytes(16))


@pytest.mark.parametrize("text", [b'"\\ud800"', '{"\\udc00": 1}', '[["a\\uDFFFb"]]',
                                  '"\\ud83d x"', b'{"a": "\\ude00\\ud83d"}'])
def test_json_with_an_unpaired_surrogate_is_refused(text):
    # UnicodeEncodeError, not a decode error: callers tell the two apart (schemas.Parser)
    with pytest.raises(UnicodeEncodeError):
        jsontext.loads(text)


def test_json_with_a_number_too_long_to_convert_is_a_decode_error():
    with pytest.raises(json.JSONDecodeError, match="Unreadable number"):
        jsontext.loads('{"gender": %s}' % ("1" * 5000))


def test_json_with_surrogate_pairs_and_escaped_backslashes_is_read():
    text = '{"n": "\\ud83d\\ude00", "p": "\\\\ud800"}'  # 😀 as a pair; a backslash, then text
    assert jsontext.loads(text) == jsontext.loads(text.encode()) == {"n": "😀", "p": "\\ud800"}


@pytest.mark.parametrize("bad_key", ["not base64!", "", base64.b64encode(b"short").decode()])
def test_bad_session_key(bad_key):
    with pytest.raises(crypto.DecryptError):
        crypto.decrypt(bad_key, *sample())


def test_raw_data_signature():
    raw = '{"nickName":"Band","gender":1}'
    signature = crypto.raw_data_signature(raw, SAMPLE_SESSION_KEY)
    import hashlib
    assert signature == hashlib.sha1((raw + SAMPLE_SESSION_KEY).encode()).hexdigest()
    crypto.check_signature(raw, signature.upper(), SAMPLE_SESSION_KEY)
    for bad in ("0" * 40, "不是签名", ""):
        with pytest.raises(crypto.SignatureMismatch):
            crypto.check_signature(raw, bad, SAMPLE_SESSION_KEY)

"""Bad and crafted inputs over real HTTP, against gunicorn as gunicorn.conf.py sets it (gevent,
2 workers), on SQLite and each server of TEST_DATABASE_URLS (issue 22, point 4).

Whatever a client sends answers a 4xx problem+json with a stable ``code``, never a 5xx, and a
refused request writes nothing:

- the leak scenario: tokens signed with the real JWT_SECRET_KEY whose claims have the wrong
  types or absurd values, and encryptedData made with the user's real session_key whose
  watermark or fields are malformed (`TOKEN_CASES`, `SEALED_CASES`);
- control characters (NUL above all, which PostgreSQL refuses) in any text field;
- a PNG whose eXIf chunk is corrupt; metadata (JPEG COM, EXIF, XMP, ICC, PNG text chunks)
  is not served after the re-encode;
- a chunked body whose chunk size is invalid (raw socket);
- a body over the limit on a keep-alive connection: 413, and its unread bytes are not read
  as the next request (raw socket).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import re
import socket
import time
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from Crypto.Cipher import AES
from Crypto.Util.Padding import pad

import services
from helpers import (APPID, JWT_KEY, OTHER_APPID, ServerClient, assert_problem,
                     production_environment)
from test_resilience_gunicorn import start_gunicorn

# one worker runs the module: its gunicorn (a module fixture) starts once, not once per worker
pytestmark = [pytest.mark.databases, pytest.mark.xdist_group("crafted-inputs")]

CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class Live:
    """gunicorn on one backend, and a client for it."""

    server: Any
    client: ServerClient
    host: str
    port: int


@pytest.fixture(scope="module")
def live(database_backend, emulator, tmp_path_factory, migrated_sqlite):
    tmp = tmp_path_factory.mktemp("gunicorn")
    url = None if database_backend == "sqlite" else database_backend.url
    server = start_gunicorn(production_environment(tmp, emulator.url, url))
    host, port = server.url.removeprefix("http://").split(":")
    try:
        yield Live(server, ServerClient(server.url, emulator), host, int(port))
    finally:
        server.stop()
        if url:  # the scratch database is shared by the run: leave it empty
            engine = sa.create_engine(url)
            services.reset_schema(engine)
            engine.dispose()
    assert "Traceback" not in server.output(), server.output()[-3000:]


@pytest.fixture(scope="module")
def victim(live):
    """A logged-in user: their access and refresh tokens."""
    body = live.client.login("o-crafted-victim")
    return {"access": body["access_token"], "refresh": body["refresh_token"]}


def problem(response: requests.Response, codes: set[str] | str) -> dict:
    """Assert a 4xx problem+json whose code is one of `codes`; returns the body."""
    codes = {codes} if isinstance(codes, str) else codes
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    body = assert_problem(response, response.status_code, response.json().get("code"))
    assert body["code"] in codes, body
    return body


def profile(live: Live, token: str) -> dict:
    response = live.client.get("/profile", token=token)
    assert response.status_code == 200, response.text
    return response.json()


def sessions(live: Live, token: str) -> list[dict]:
    response = live.client.get("/auth/sessions", token=token)
    assert response.status_code == 200, response.text
    return response.json()["sessions"]


# --- the leak scenario: tokens signed with the real key ------------------------------------

def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign(payload: bytes, header: dict | None = None, key: str = JWT_KEY) -> str:
    """A compact HS256 JWS over these exact payload bytes (any JSON, or none)."""
    head = b64url(json.dumps(header or {"alg": "HS256", "typ": "JWT"}).encode())
    signing_input = f"{head}.{b64url(payload)}".encode("ascii")
    mac = hmac.new(key.encode(), signing_input, hashlib.sha256).digest()
    return f"{signing_input.decode('ascii')}.{b64url(mac)}"


def claims_of(token: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))


MISSING = object()
HUGE = 10 ** 400  # JSON has no limit; 401 digits
# (label, value): every kind a JSON claim can take
VALUES = [("list", ["x"]), ("dict", {"a": 1}), ("int", 7), ("float", 7.5), ("numeric_str", "7"),
          ("true", True), ("null", None), ("missing", MISSING), ("huge", HUGE),
          ("nan", float("nan")), ("inf", float("inf")), ("nan_str", "NaN"), ("empty", ""),
          ("nul_str", "a\x00b")]
# what each claim must be (the spec these tests check, written independently of the code)
STRING_CLAIMS = ("sub", "appid", "sid", "jti")
TIME_CLAIMS = ("exp", "iat", "nbf")


def _right_type(claim: str, value: Any) -> bool:
    """Whether `value` is a well-formed value for `claim` (then it is not a crafted case)."""
    if claim in STRING_CLAIMS:
        return isinstance(value, str) and value not in ("", "a\x00b")
    if claim == "ver":
        return type(value) is int and value < 2 ** 31
    if claim in TIME_CLAIMS:
        return type(value) in (int, float) and 0 <= value < 2 ** 40
    return False  # type: only "access" / "refresh", which VALUES never holds


def _token_cases() -> list:
    cases = []
    for claim in (*STRING_CLAIMS, "ver", *TIME_CLAIMS, "type"):
        for label, value in VALUES:
            if _right_type(claim, value) or (claim in ("nbf", "type") and value is MISSING):
                continue  # (nbf is optional; flask-jwt-extended reads no type as "access")
            # pyjwt reads exp with int(): "7" and true are a past time to it (expired)
            codes = {"token_invalid", "token_expired"} if claim == "exp" else {"token_invalid"}
            cases.append(pytest.param({claim: value}, codes, id=f"{claim}={label}"))
    for label, payload, codes in [
        ("expired", {"exp": 1_000_000}, {"token_expired"}),
        ("negative_exp", {"exp": -1}, {"token_expired"}),
        ("exp_beyond_year_9999", {"exp": 253402300800}, {"token_invalid"}),
        ("iat_in_future", {"iat": time.time() + 3600}, {"token_invalid"}),
        ("nbf_in_future", {"nbf": time.time() + 3600}, {"token_invalid"}),
        ("ver_negative", {"ver": -1}, {"token_invalid", "token_revoked"}),
        ("sub_unknown", {"sub": "o-nobody"}, {"user_not_found"}),
        ("appid_other", {"appid": "wx0000000000000000"}, {"token_invalid"}),
        ("type_other", {"type": "id"}, {"token_invalid"}),
        ("sub_long", {"sub": "o" * 2000}, {"token_invalid", "user_not_found"}),
    ]:
        cases.append(pytest.param(payload, codes, id=label))
    for label, raw in [("payload_list", b"[1, 2]"), ("payload_string", b'"x"'),
                       ("payload_not_json", b"{not json"), ("payload_not_utf8", b'{"sub": "\xff"}'),
                       ("payload_nan", b'{"exp": NaN}'), ("payload_deep", b"[" * 3000),
                       ("payload_huge_number", b'{"exp": 1' + b"0" * 5000 + b"}"),
                       ("payload_lone_surrogate", b'{"sub": "\\ud800"}')]:
        cases.append(pytest.param(raw, {"token_invalid"}, id=label))
    for label, header in [("alg_none", {"alg": "none"}), ("alg_hs512", {"alg": "HS512"}),
                          ("alg_list", {"alg": ["HS256"]}), ("kid_dict", {"alg": "HS256", "kid": {}}),
                          ("crit", {"alg": "HS256", "crit": ["exp"]})]:
        cases.append(pytest.param(("header", header), {"token_invalid"}, id=label))
    return cases


TOKEN_CASES = _token_cases()


def craft(genuine: str, case: Any) -> str:
    """A token signed with the real key: `genuine`'s claims changed by `case` (a dict of
    claims, MISSING deletes one), raw payload bytes, or ("header", header)."""
    if isinstance(case, bytes):
        return sign(case)
    claims = claims_of(genuine)
    if isinstance(case, tuple):
        return sign(json.dumps(claims).encode(), header=case[1])
    for name, value in case.items():
        if value is MISSING:
            claims.pop(name, None)
        else:
            claims[name] = value
    return sign(json.dumps(claims).encode())  # (NaN and Infinity as JSON's usual extension)


@pytest.mark.parametrize("case, codes", TOKEN_CASES)
def test_crafted_token_is_refused_and_writes_nothing(live, victim, case, codes):
    """Each crafted token, on a reading view (twice: the second from the verified-token
    cache), a writing view, refresh and logout: 401/403 with a stable code; the victim's
    profile and session are as before."""
    before = profile(live, victim["access"])
    access, refresh = craft(victim["access"], case), craft(victim["refresh"], case)
    answers = [live.client.get("/profile", token=access),
               live.client.get("/profile", token=access),
               live.client.patch("/profile", token=access, json={"nickname": "crafted"}),
               live.client.post("/auth/refresh", token=refresh),
               live.client.post("/auth/logout", token=refresh)]
    for answer in answers:
        problem(answer, codes)
    assert profile(live, victim["access"]) == before
    assert len(sessions(live, victim["access"])) == 1


# --- the leak scenario: encryptedData made with the real session_key ------------------------

def seal(session_key: str, plaintext: bytes, *, padded: bool = True) -> dict[str, str]:
    """``{"encryptedData", "iv"}`` as WeChat makes them, around any plaintext bytes."""
    key, iv = base64.b64decode(session_key), bytes(range(16))
    body = pad(plaintext, 16) if padded else plaintext
    return {"encryptedData": base64.b64encode(AES.new(key, AES.MODE_CBC, iv).encrypt(body)).decode(),
            "iv": base64.b64encode(iv).decode()}


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _watermarked(fields: dict, watermark: Any = None, **changes: Any) -> bytes:
    mark = {"appid": APPID, "timestamp": "NOW"} if watermark is None else watermark
    if isinstance(mark, dict):
        mark = {**mark, **changes}
        mark = {k: v for k, v in mark.items() if v is not MISSING}
    return _json({**fields, "watermark": mark})


USER = {"nickName": "Crafted", "gender": 1}
PHONE = {"phoneNumber": "13800138000", "purePhoneNumber": "13800138000", "countryCode": "86"}
REFUSED_WATERMARK = {"watermark_mismatch", "watermark_expired"}


def _sealed_cases() -> list:
    cases = []
    for path, fields in (("/profile", USER), ("/profile/phone", PHONE)):
        kind = path.rsplit("/", 1)[-1]
        for label, value in [("nan", float("nan")), ("inf", float("inf")),
                             ("minus_inf", float("-inf")), ("huge", HUGE), ("minus_one", -1),
                             ("string", "NOW_STR"), ("null", None), ("missing", MISSING),
                             ("true", True), ("list", ["NOW"]), ("dict", {}),
                             ("year_9999", 253402300799)]:
            cases.append(pytest.param(path, _watermarked(fields, timestamp=value),
                                      {"watermark_expired"}, id=f"{kind}-timestamp={label}"))
        for label, value in [("missing", MISSING), ("list", [APPID]), ("null", None),
                             ("number", 7), ("other_app", OTHER_APPID), ("nul", APPID + "\x00"),
                             ("dict", {"appid": APPID})]:
            cases.append(pytest.param(path, _watermarked(fields, appid=value),
                                      {"watermark_mismatch"}, id=f"{kind}-appid={label}"))
        for label, mark in [("list", [APPID]), ("string", APPID), ("null", MISSING)]:
            body = _json({**fields, "watermark": mark}) if mark is not MISSING else _json(fields)
            cases.append(pytest.param(path, body, {"watermark_mismatch"},
                                      id=f"{kind}-watermark={label}"))
        for label, plaintext, padded in [
            ("not_json", b"not json at all", True), ("not_utf8", b'{"a": "\xff\xfe"}', True),
            ("json_list", b"[1, 2, 3]", True), ("json_string", b'"text"', True),
            ("json_nan", b"NaN", True), ("empty", b"", True),
            ("deep", b"[" * 5000 + b"]" * 5000, True),
            ("huge_number", b'{"n": 1' + b"0" * 5000 + b"}", True),
            ("lone_surrogate", b'{"nickName": "\\udc00"}', True),
            ("wrong_padding", b"0123456789abcdef", False),
            ("bad_padding_byte", b"0123456789abcde\x11", False),
        ]:
            cases.append(pytest.param(path, (plaintext, padded), {"decrypt_failed"},
                                      id=f"{kind}-{label}"))
    # well watermarked, fields of the wrong type or holding control characters: dropped or
    # refused, never stored as they are
    for label, fields in [("nickname_nul", {"nickName": "a\x00b"}),
                          ("nickname_list", {"nickName": ["x"]}),
                          ("nickname_long", {"nickName": "n" * 10_000}),
                          ("avatar_nul", {"avatarUrl": "https://a.example/\x00.png"}),
                          ("gender_string", {"gender": "1"}), ("gender_huge", {"gender": HUGE}),
                          ("gender_nan", {"gender": float("nan")}),
                          ("unionid_list", {"unionId": ["u"]}),
                          ("unionid_nul", {"unionId": "u\x00u"}),
                          ("unionid_long", {"unionId": "u" * 10_000}),
                          ("language_dict", {"language": {"a": 1}}),
                          ("city_number", {"city": 7})]:
        cases.append(pytest.param("/profile", _watermarked(fields), {"ok"},
                                  id=f"profile-{label}"))
    for label, fields in [("number_list", {**PHONE, "phoneNumber": ["1"]}),
                          ("number_nul", {**PHONE, "phoneNumber": "138\x00"}),
                          ("pure_nul", {**PHONE, "purePhoneNumber": "138\x00"}),
                          ("number_long", {**PHONE, "phoneNumber": "1" * 10_000}),
                          ("country_huge", {**PHONE, "countryCode": HUGE}),
                          ("country_nul", {**PHONE, "countryCode": "8\x006"}),
                          ("country_nan", {**PHONE, "countryCode": float("nan")}),
                          ("missing", {})]:
        cases.append(pytest.param("/profile/phone", _watermarked(fields),
                                  {"invalid_request", "ok"}, id=f"phone-{label}"))
    return cases


SEALED_CASES = _sealed_cases()


@pytest.fixture(scope="module")
def sealer(live, victim):
    """The victim's real session_key (what the emulator gave them at login)."""
    return live.client.emulator.session_key("o-crafted-victim")


@pytest.mark.parametrize("path, plaintext, codes", SEALED_CASES)
def test_crafted_encrypted_data_is_refused_or_cleaned(live, victim, sealer, path, plaintext,
                                                      codes):
    """encryptedData that decrypts with the user's real session_key, carrying a malformed
    watermark, plaintext or fields: refused with a stable code and nothing written, or
    accepted with nothing stored that is not clean text of the column's size."""
    if isinstance(plaintext, tuple):
        sealed = seal(sealer, *plaintext[:1], padded=plaintext[1])
    else:
        now = str(int(time.time())).encode()
        sealed = seal(sealer, plaintext.replace(b'"NOW"', now).replace(b'"NOW_STR"',
                                                                       b'"' + now + b'"'))
    before = profile(live, victim["access"])
    answer = live.client.post(path, token=victim["access"], json=sealed)
    if answer.status_code == 200 and "ok" in codes:
        stored = profile(live, victim["access"])
        for name, value in stored.items():
            if isinstance(value, str):
                assert not CONTROL.search(value) and len(value) <= 512, (name, value[:80])
        assert stored["gender"] in (0, 1, 2)
        return
    problem(answer, codes - {"ok"})
    assert profile(live, victim["access"]) == before


# --- control characters in text fields ------------------------------------------------------

TEXT_FIELDS = {"nickname": "Ann{}e", "avatar_url": "https://cdn.example.com/a{}b.png",
               "country": "Chi{}na", "province": "Guang{}dong", "city": "Shen{}zhen",
               "language": "zh{}CN"}


@pytest.mark.parametrize("character", ["\x00", "\x01", "\x1f", "\x7f"],
                         ids=["nul", "soh", "us", "del"])
@pytest.mark.parametrize("field", sorted(TEXT_FIELDS))
def test_control_characters_are_refused_in_every_text_field(live, victim, field, character):
    """PATCH /profile with a control character in any text field: 400 invalid_request naming
    the field, nothing stored (NUL was stored on SQLite and MariaDB, a 500 on PostgreSQL)."""
    before = profile(live, victim["access"])
    answer = live.client.patch("/profile", token=victim["access"],
                               json={field: TEXT_FIELDS[field].format(character)})
    body = problem(answer, "invalid_request")
    assert field in body["errors"], body
    assert profile(live, victim["access"]) == before


def test_every_text_field_of_every_request_schema_refuses_nul():
    """The one text validator is on every string a client sends (the JSON bodies' schemas)."""
    import marshmallow as ma

    from wxauth.web import schemas

    checked = []
    for schema_class in (schemas.LoginSchema, schemas.ProfilePatchSchema, schemas.PhoneSchema,
                         schemas.DeleteAccountSchema, schemas.EncryptedProfileSchema):
        for name, field in schema_class().fields.items():
            if not isinstance(field, ma.fields.String) or isinstance(field, schemas.Base64Bytes):
                continue
            errors = schema_class().validate({name: "x\x00y"}, partial=True)
            assert name in errors, (schema_class.__name__, name, errors)
            checked.append(name)
    assert {"code", "appid", "nickname", "avatar_url", "city", "rawData"} <= set(checked)


# --- avatars: a corrupt eXIf chunk, metadata after the re-encode -----------------------------

SECRET = b"secret-marker"


def picture(fmt: str, **options: Any) -> bytes:
    from PIL import Image

    image = Image.new("RGB", (48, 32), (200, 30, 30))
    image.paste((20, 40, 220), (0, 0, 24, 32))
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def upload(live: Live, token: str, data: bytes, name: str = "avatar") -> requests.Response:
    return live.client.post("/profile/avatar", token=token,
                            files={"file": (name, data, "application/octet-stream")})


def served(live: Live, answer: requests.Response) -> bytes:
    """The avatar file the upload's answer points to, fetched over HTTP."""
    assert answer.status_code == 200, answer.text
    fetched = requests.get(answer.json()["avatar_url"], timeout=10)
    assert fetched.status_code == 200
    return fetched.content


# eXIf payloads on which Pillow's EXIF reader raises (SyntaxError, struct.error, TypeError)
CORRUPT_EXIF = [
    pytest.param(b"garbage", id="not_tiff"), pytest.param(b"E", id="one_byte"),
    pytest.param(b"Exif\x00\x00MM\x00*", id="truncated_header"),
    pytest.param(b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x03\x01\x1b\x00\x02\x00\x00\x00\x06"
                 b"\x00\x00\x002\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06\x00\x00\x87i\x00\x04\x00"
                 b"\x00\x00\x01\x00\x00\x00\xe5\x00\x00\xdf\x00Maker\x00\x00\x01\x90\x03\x00\x02\x00"
                 b"\x00\x00\x14\x00\x00\x00J\x00\x00\x00\x002020:01:01 00:00:00\x00",
                 id="sub_ifd_of_the_wrong_type"),
]


@pytest.mark.parametrize("payload", CORRUPT_EXIF)
def test_png_with_a_corrupt_exif_chunk_is_stored_without_it(live, victim, payload):
    """A PNG whose eXIf chunk does not parse (it answered 500): the image is kept, its
    orientation as stored, and the served file has no eXIf chunk."""
    from PIL import Image

    data = picture("PNG", exif=payload)
    assert b"eXIf" in data
    stored = served(live, upload(live, victim["access"], data))
    assert stored.startswith(b"\x89PNG") and b"eXIf" not in stored
    assert Image.open(io.BytesIO(stored)).size == (48, 32)


def _metadata_pictures() -> list:
    from PIL import Image, ImageCms, PngImagePlugin

    exif = Image.Exif()
    exif[0x013B] = SECRET.decode()  # Artist
    exif[0x010E] = SECRET.decode()  # ImageDescription
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">' + SECRET + b"</x:xmpmeta>"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", SECRET.decode())
    text.add_text("Author", SECRET.decode(), zip=True)
    text.add_itxt("Description", SECRET.decode(), lang="en")
    text.add_itxt("XML:com.adobe.xmp", xmp.decode())
    return [
        pytest.param(picture("JPEG", comment=SECRET), [b"\xff\xfe"], id="jpeg-com"),
        pytest.param(picture("JPEG", exif=exif.tobytes(), xmp=xmp, icc_profile=icc,
                             comment=SECRET),
                     [b"Exif\x00\x00", b"http://ns.adobe.com/xap", b"ICC_PROFILE", b"\xff\xfe"],
                     id="jpeg-all"),
        pytest.param(picture("PNG", pnginfo=text, exif=exif.tobytes(), icc_profile=icc),
                     [b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"iCCP"], id="png-all"),
        pytest.param(picture("WEBP", exif=exif.tobytes(), xmp=xmp, icc_profile=icc),
                     [b"EXIF", b"XMP ", b"ICCP"], id="webp-all"),
    ]


@pytest.mark.parametrize("data, markers", _metadata_pictures())
def test_uploaded_metadata_is_not_served(live, victim, data, markers):
    """Comments, EXIF, XMP, ICC profiles and PNG text chunks of an upload are not in the file
    served after the re-encode (the JPEG comment was)."""
    assert SECRET in data or b"ICC_PROFILE" in data
    stored = served(live, upload(live, victim["access"], data))
    assert SECRET not in stored
    found = [m for m in markers if m in stored]
    assert not found, found


# --- raw HTTP/1.1 on one connection ------------------------------------------------------------

STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


def exchange(live: Live, data: bytes, *, idle: float = 3.0) -> bytes:
    """Send `data` on one connection; everything gunicorn answers, until it closes the
    connection (or says nothing more for `idle` seconds)."""
    with socket.create_connection((live.host, live.port), timeout=idle) as sock:
        sock.sendall(data)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (socket.timeout, ConnectionResetError):
            pass
    return answer


def statuses(answer: bytes) -> list[int]:
    return [int(m) for m in STATUS_LINE.findall(answer)]


def request_head(method: str, path: str, token: str | None = None, **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def first_body(answer: bytes) -> dict:
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert b"application/problem+json" in head.lower(), answer[:600]
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
    return json.loads(rest[:length])


BAD_CHUNKS = [pytest.param(b"zz\r\n{}\r\n0\r\n\r\n", id="size_not_hex"),
              pytest.param(b"-2\r\n{}\r\n0\r\n\r\n", id="size_negative"),
              pytest.param(b"2 x\r\n{}\r\n0\r\n\r\n", id="size_with_junk"),
              pytest.param(b"2\r\n{}XX\r\n0\r\n\r\n", id="no_chunk_terminator"),
              pytest.param(b"2;\x01\r\n{}\r\n0\r\n\r\n", id="bad_extension")]


@pytest.mark.parametrize("body", BAD_CHUNKS)
@pytest.mark.parametrize("path", ["/auth/login", "/profile/avatar"])
def test_a_malformed_chunked_body_is_400(live, victim, path, body):
    """A chunked body that does not parse (it answered 500): 400 invalid_request
    problem+json, then nothing but the end of the connection."""
    content_type = ("application/json" if path == "/auth/login"
                    else "multipart/form-data; boundary=b")
    head = request_head("POST", path, victim["access"], Content_Type=content_type,
                        Transfer_Encoding="chunked")
    answer = exchange(live, head + body)
    assert statuses(answer) == [400], answer[:600]
    assert first_body(answer)["code"] == "invalid_request"


def _oversized_requests() -> list:
    smuggled = request_head("GET", "/smuggled-from-the-body") * 3
    json_body = b'{"code": "' + smuggled + b"x" * (80 * 1024) + b'"}'
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part)
                       for part in (json_body[i:i + 8192] for i in range(0, len(json_body), 8192)))
    return [
        pytest.param(request_head("POST", "/auth/login", Content_Type="application/json",
                                  Content_Length=str(len(json_body))) + json_body,
                     id="content_length"),
        pytest.param(request_head("POST", "/auth/login", Content_Type="application/json",
                                  Transfer_Encoding="chunked") + chunked + b"0\r\n\r\n",
                     id="chunked"),
    ]


@pytest.mark.parametrize("oversized", _oversized_requests())
def test_a_body_over_the_limit_on_a_keep_alive_connection(live, oversized):
    """A JSON body over MAX_CONTENT_LENGTH, then a second request on the same connection:
    413 payload_too_large, then the second request's own answer; the request lines inside
    the unread body are never answered."""
    answer = exchange(live, oversized + request_head("GET", "/healthz", Connection="close"))
    assert statuses(answer) == [413, 200], answer[:2000]
    assert first_body(answer)["code"] == "payload_too_large"
    assert answer.rstrip().endswith(b'{"status":"ok","store":"ok"}'), answer[-300:]


def test_an_avatar_over_the_limit_on_a_keep_alive_connection(live, victim):
    """An avatar over AVATAR_MAX_BYTES (the app reads only part of it), then a second request
    on the same connection: 413, then the second request's own answer."""
    boundary = "b0undary"
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n").encode()
    body = (part + (request_head("GET", "/smuggled-from-the-body") * 3) * 80_000
            + f"\r\n--{boundary}--\r\n".encode())
    assert len(body) > 2 * 1024 * 1024 + 16 * 1024
    head = request_head("POST", "/profile/avatar", victim["access"],
                        Content_Type=f"multipart/form-data; boundary={boundary}",
                        Content_Length=str(len(body)))
    answer = exchange(live, head + body + request_head("GET", "/healthz", Connection="close"),
                      idle=10)
    assert statuses(answer) == [413, 200], answer[:2000]
    assert first_body(answer)["code"] == "payload_too_large"

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

pytestmark = pytest.mark.databases

CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class Live:
    """gunicorn on one backend, a client for it, and a logged-in victim."""

    server: Any
    client: ServerClient
    host: str
    port: int


@pytest.fixture(scope="module")
def live(database_backend, emulator, tmp_path_factory):
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

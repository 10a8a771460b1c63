"""Tokens any service verifies by a public key (issue 23, points 1 and 2): ES256 by default,
RS256 and EdDSA, HS256 as before; keys in the database (private part encrypted), `flask keys
list|generate|rotate|prune`; the discovery document and the key set, cacheable.

Verified with libraries nobody here wrote: PyJWT's `PyJWKClient` (and the README's Python
snippet) following ``jwks_uri`` from the discovery document; the `jose` npm package (the
README's Node snippet) in tests/test_keys_gunicorn.py, before and after a rotation.
"""

from __future__ import annotations

import base64
import json
import re
import time
from datetime import timedelta

import jwt
import pytest
import sqlalchemy as sa
from jwt.algorithms import ECAlgorithm, HMACAlgorithm

from config import ConfigError
from helpers import APPID, JWT_KEY, assert_problem
from wxauth import create_app
from wxauth.extensions import db
from wxauth.infra import keys as codec
from wxauth.models import SigningKey, utcnow
from wxauth.state import state

ALGORITHMS = ["ES256", "RS256", "EdDSA"]


def unverified(token: str) -> tuple[dict, dict]:
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


def verify_with_jwks(server, token: str, **options) -> dict:
    """The claims of `token`, verified by PyJWT's PyJWKClient from the discovery document's
    jwks_uri (raises PyJWKClientError / InvalidTokenError)."""
    discovery = server.get("/.well-known/openid-configuration").json()
    client = jwt.PyJWKClient(discovery["jwks_uri"], cache_keys=False)
    key = client.get_signing_key_from_jwt(token)
    return jwt.decode(token, key.key, algorithms=ALGORITHMS, issuer=discovery["issuer"],
                      **options)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_tokens_carry_kid_and_verify_with_the_published_key(app_config, algorithm, request):
    app_config["JWT_ALGORITHM"] = algorithm
    server = request.getfixturevalue("server")
    pair = server.login("o-keys", unionid="u-keys")
    header, claims = unverified(pair["access_token"])
    keyset = server.get("/.well-known/jwks.json").json()["keys"]
    assert [k["alg"] for k in keyset] == [algorithm]
    assert header == {"alg": algorithm, "kid": keyset[0]["kid"], "typ": "JWT"}
    assert keyset[0]["kid"] == codec.thumbprint(keyset[0])  # RFC 7638
    assert {"kid", "alg", "use", "kty"} <= set(keyset[0]) and "d" not in keyset[0]
    sessions = server.get("/auth/sessions", token=pair["access_token"]).json()["sessions"]
    for token, kind in ((pair["access_token"], "access"), (pair["refresh_token"], "refresh")):
        verified = verify_with_jwks(server, token)
        assert verified == unverified(token)[1]
        assert verified["sub"] == "o-keys" and verified["appid"] == APPID
        assert verified["sid"] == sessions[0]["id"] and verified["type"] == kind
        assert verified["iss"] == server.url and "aud" not in verified
        assert verified["jti"] and verified["exp"] > verified["iat"] > 0
    assert claims["exp"] - claims["iat"] == 7 * 24 * 3600
    assert server.get("/profile", token=pair["access_token"]).status_code == 200
    renewed = server.post("/auth/refresh", token=pair["refresh_token"])
    assert renewed.status_code == 200
    assert unverified(renewed.json()["access_token"])[0]["kid"] == keyset[0]["kid"]


def test_issuer_and_audience_settings(app_config, request):
    app_config.update(JWT_ISSUER="https://auth.example.com", JWT_AUDIENCE="orders-api")
    server = request.getfixturevalue("server")
    token = server.login("o-aud")["access_token"]
    discovery = server.get("/.well-known/openid-configuration").json()
    assert discovery["issuer"] == "https://auth.example.com"
    claims = verify_with_jwks(server, token, audience="orders-api")
    assert claims["iss"] == "https://auth.example.com" and claims["aud"] == "orders-api"
    with pytest.raises(jwt.InvalidAudienceError):
        verify_with_jwks(server, token, audience="another-service")
    assert server.get("/profile", token=token).status_code == 200


def test_discovery_document_claims_only_what_wxauth_does(server):
    response = server.get("/.well-known/openid-configuration")
    assert response.status_code == 200 and "Set-Cookie" not in response.headers
    assert response.json() == {
        "issuer": server.url,
        "jwks_uri": server.url + "/.well-known/jwks.json",
        "introspection_endpoint": server.url + "/oauth/introspect",
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid", "appid"],
        "service_documentation": server.url + "/docs/",
    }
    for path in ("/.well-known/openid-configuration", "/.well-known/jwks.json"):
        first = server.get(path)
        assert first.headers["Cache-Control"] == "public, max-age=300"
        etag = first.headers["ETag"]
        again = server.get(path, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""


def test_hs256_keeps_todays_behaviour(app_config, request):
    app_config["JWT_ALGORITHM"] = "HS256"
    server = request.getfixturevalue("server")
    token = server.login("o-hs256")["access_token"]
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    claims = jwt.decode(token, JWT_KEY, algorithms=["HS256"])
    assert claims["sub"] == "o-hs256"
    assert server.get("/profile", token=token).status_code == 200
    assert server.get("/.well-known/jwks.json").json() == {"keys": []}
    with request.getfixturevalue("app").app_context():
        assert db.session.query(SigningKey).count() == 0


def test_hs256_tokens_keep_verifying_after_the_move_while_the_secret_is_set(
        app_config, tmp_path, monkeypatch, request):
    """The upgrade: tokens issued by an HS256 server work on the ES256 server (same
    database) until they expire, while JWT_SECRET_KEY is set; without it they do not."""
    app_config["JWT_ALGORITHM"] = "HS256"
    server = request.getfixturevalue("server")
    old = server.login("o-upgrade")
    es256 = create_app({**app_config, "JWT_ALGORITHM": "ES256"})
    client = es256.test_client()
    bearer = {"Authorization": f"Bearer {old['access_token']}"}
    assert client.get("/profile", headers=bearer).status_code == 200
    renewed = client.post("/auth/refresh",
                          headers={"Authorization": f"Bearer {old['refresh_token']}"})
    assert renewed.status_code == 200
    assert jwt.get_unverified_header(renewed.json["access_token"])["alg"] == "ES256"
    monkeypatch.setenv("WXAUTH_INSTANCE_PATH", str(tmp_path / "no-old-key-file"))
    no_secret = create_app({**app_config, "JWT_ALGORITHM": "ES256", "JWT_SECRET_KEY": None})
    assert "HS256" not in no_secret.config["JWT_DECODE_ALGORITHMS"]
    refused = no_secret.test_client().get("/profile", headers=bearer)
    assert refused.status_code == 401 and refused.json["code"] == "token_invalid"
    new = {"Authorization": f"Bearer {renewed.json['access_token']}"}
    assert no_secret.test_client().get("/profile", headers=new).status_code == 200


def test_forged_and_confused_tokens_are_refused(app, server):
    token = server.login("o-forge")["access_token"]
    header, claims = unverified(token)
    stranger = codec.generate("ES256")  # a key never published
    cases = {
        "unknown kid": jwt.encode(claims, stranger, algorithm="ES256",
                                  headers={"kid": codec.public_jwk(stranger, "ES256")["kid"]}),
        "published kid, another key": jwt.encode(claims, stranger, algorithm="ES256",
                                                 headers={"kid": header["kid"]}),
        "no kid, ES256": jwt.encode(claims, stranger, algorithm="ES256"),
        "kid as a number": sign_raw({"alg": "ES256", "kid": 7}, claims, stranger),
    }
    # algorithm confusion: HS256 keyed with the published public key's text
    public = server.get("/.well-known/jwks.json").json()["keys"][0]
    cases["HS256 with the public key"] = sign_raw(
        {"alg": "HS256", "kid": header["kid"]}, claims, json.dumps(public).encode(),
        HMACAlgorithm(HMACAlgorithm.SHA256))
    cases["alg none"] = jwt.encode(claims, None, algorithm="none", headers={"kid": header["kid"]})
    for name, forged in cases.items():
        response = server.get("/profile", token=forged)
        assert_problem(response, 401, "token_invalid")
        with pytest.raises((jwt.PyJWKClientError, jwt.InvalidTokenError)):
            verify_with_jwks(server, forged)


def test_private_keys_are_encrypted_at_rest(app, server):
    server.login("o-at-rest")
    with app.app_context():
        (row,) = db.session.execute(sa.text("SELECT kid, private_key FROM signing_keys")).all()
        assert "PRIVATE KEY" not in row.private_key and row.private_key.startswith("gAAAAA")
        pem = state(app).cipher.decrypt(row.private_key)
        assert codec.public_jwk(codec.load_private(pem), "ES256")["kid"] == row.kid


def sign_raw(header: dict, claims: dict, key, algorithm=ECAlgorithm(ECAlgorithm.SHA256)) -> str:
    """A JWS with this exact header, signed by `algorithm` (PyJWT's, ES256 by default) with
    `key` as it is (PyJWT's encode refuses to write some of these)."""
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    signing_input = f"{part(header)}.{part(claims)}".encode()
    signature = algorithm.sign(signing_input, key)
    return f"{signing_input.decode()}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def reload_keys(app) -> None:
    """What the server's process does by itself within SIGNING_KEYS_REFRESH, at once."""
    with app.app_context():
        state(app).keyring.reload()


def run_keys(runner, *args: str) -> str:
    result = runner.invoke(args=["keys", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_keys_generate_rotate_prune(app, server, runner):
    first = server.login("o-rotate")
    (first_kid,) = [k["kid"] for k in server.get("/.well-known/jwks.json").json()["keys"]]

    staged = run_keys(runner, "generate").split()[3]  # "generated ES256 key <kid> (staged…"
    reload_keys(app)
    published = [k["kid"] for k in server.get("/.well-known/jwks.json").json()["keys"]]
    assert published == [first_kid, staged]
    assert unverified(server.login("o-rotate-2")["access_token"])[0]["kid"] == first_kid

    rotated = run_keys(runner, "rotate")
    assert staged in rotated
    reload_keys(app)
    after = server.login("o-rotate-3")
    assert unverified(after["access_token"])[0]["kid"] == staged
    for token in (first["access_token"], after["access_token"]):  # old and new both verify
        assert server.get("/profile", token=token).status_code == 200
        verify_with_jwks(server, token)
    listing = run_keys(runner, "list")
    assert f"{first_kid}  ES256      retired" in listing and f"{staged}  ES256      current" in listing

    assert "pruned 0 keys" in run_keys(runner, "prune")  # its tokens may still be live
    with app.app_context():
        longest = timedelta(seconds=app.config["JWT_REFRESH_TOKEN_EXPIRES"]
                            + app.config["SIGNING_KEYS_REFRESH"])
        db.session.execute(sa.update(SigningKey).where(SigningKey.kid == first_kid)
                           .values(retired_at=utcnow() - longest + timedelta(minutes=1)))
        db.session.commit()
    assert "pruned 0 keys" in run_keys(runner, "prune")  # a minute short: never before
    with app.app_context():
        db.session.execute(sa.update(SigningKey).where(SigningKey.kid == first_kid)
                           .values(retired_at=utcnow() - longest - timedelta(seconds=1)))
        db.session.commit()
    assert f"pruned 1 keys: {first_kid}" in run_keys(runner, "prune")
    reload_keys(app)
    assert [k["kid"] for k in server.get("/.well-known/jwks.json").json()["keys"]] == [staged]
    assert server.get("/profile", token=after["access_token"]).status_code == 200


def test_keys_commands_explain_hs256(app_config, request):
    app_config["JWT_ALGORITHM"] = "HS256"
    runner = request.getfixturevalue("runner")
    result = runner.invoke(args=["keys", "rotate"])
    assert result.exit_code != 0 and "JWT_ALGORITHM is HS256" in result.output
    result = runner.invoke(args=["keys", "rotate", "--algorithm", "EdDSA"])
    assert result.exit_code == 0 and "EdDSA key" in result.output


@pytest.mark.parametrize("algorithm", ["ES512", "none", "hs256"])
def test_an_unknown_algorithm_is_a_configuration_error(app_config, algorithm):
    with pytest.raises(ConfigError, match="JWT_ALGORITHM="):
        create_app({**app_config, "JWT_ALGORITHM": algorithm})


def test_a_rotation_on_another_host_is_picked_up_without_a_restart(app_config, request):
    """Two apps on one database, as two instances: a rotation through the one is signed with
    by the other after SIGNING_KEYS_REFRESH, and its tokens verify on both at once."""
    app_config["SIGNING_KEYS_REFRESH"] = 0.5
    server = request.getfixturevalue("server")
    other = create_app(app_config)
    before = server.login("o-two")["access_token"]
    with other.app_context():
        from wxauth.services import keys
        new = keys.rotate("ES256").kid
    time.sleep(0.6)
    after = server.login("o-two")["access_token"]
    assert unverified(after)[0]["kid"] == new != unverified(before)[0]["kid"]
    other_client = other.test_client()
    for token in (before, after):
        response = other_client.get("/profile", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200


def test_a_leaked_key_is_unpublished_at_once(app, server, runner):
    token = server.login("o-leak")["access_token"]
    leaked = unverified(token)[0]["kid"]
    result = runner.invoke(args=["keys", "prune", "--leaked", leaked])
    assert result.exit_code != 0 and "rotate` first" in result.output  # still signing
    run_keys(runner, "rotate")
    assert f"deleted key {leaked}" in run_keys(runner, "prune", "--leaked", leaked)
    reload_keys(app)
    assert_problem(server.get("/profile", token=token), 401, "token_invalid")
    assert leaked not in {k["kid"] for k in server.get("/.well-known/jwks.json").json()["keys"]}
    assert server.get("/profile", token=server.login("o-leak")["access_token"]).status_code == 200


def test_a_rolling_change_of_algorithm_does_not_make_instances_fight(app_config, request):
    """Two instances on one database, one still ES256 and one EdDSA already: each generates
    its first key once and keeps it (neither retires the other's); `keys rotate` once every
    instance runs EdDSA retires the ES256 key."""
    app_config["SIGNING_KEYS_REFRESH"] = 0
    server = request.getfixturevalue("server")
    eddsa = create_app({**app_config, "JWT_ALGORITHM": "EdDSA"})
    eddsa_client = eddsa.test_client()
    kids = set()
    for round_ in range(3):
        es = server.login(f"o-rolling-{round_}")["access_token"]
        code = request.getfixturevalue("emulator").mint(f"o-rolling-ed-{round_}")["code"]
        ed = eddsa_client.post("/auth/login", json={"code": code}).json["access_token"]
        kids |= {(unverified(es)[0]["alg"], unverified(es)[0]["kid"]),
                 (unverified(ed)[0]["alg"], unverified(ed)[0]["kid"])}
        assert eddsa_client.get("/profile", headers={"Authorization": f"Bearer {es}"}
                                ).status_code == 200
        answer = server.get("/profile", token=ed)
        assert answer.status_code == 200, answer.text
    assert sorted(alg for alg, _ in kids) == ["ES256", "EdDSA"]  # one key each, kept
    assert "EdDSA key" in run_keys(eddsa.test_cli_runner(), "rotate")
    statuses = run_keys(request.getfixturevalue("runner"), "list")
    assert re.search(r"ES256\s+retired", statuses) and re.search(r"EdDSA\s+current", statuses)


def test_a_new_keys_first_tokens_are_not_refused_after_a_fresh_read(app_config, request):
    """Another instance (or worker) read the keys a moment ago, before a key existed that
    this one just made and signs with (a rotation, or two workers' first logins on a fresh
    database each generating one): its first tokens verify there at once. Reads for unknown
    kids stay limited (UNKNOWN_KID_RELOAD), the periodic read does not use up that budget."""
    app_config["SIGNING_KEYS_REFRESH"] = 30
    server, app = request.getfixturevalue("server"), request.getfixturevalue("app")
    other = create_app(app_config)
    other_client = other.test_client()
    first = server.login("o-fresh-read")["access_token"]
    with other.app_context():
        state(other).keyring.reload()  # (a periodic read, just now)
    started = time.monotonic()
    with app.app_context():
        from wxauth.services import keys
        new = keys.rotate("ES256").kid
    reload_keys(app)
    token = server.login("o-fresh-read")["access_token"]
    assert unverified(token)[0]["kid"] == new != unverified(first)[0]["kid"]
    response = other_client.get("/profile", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, (time.monotonic() - started, response.json)
    # a made-up kid right after that read is refused without another read
    with other.app_context():
        assert state(other).keyring.public_key("no-such-kid") is None

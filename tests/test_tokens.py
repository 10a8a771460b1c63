"""The JWT login state: every failure is a 401 problem, never flask-jwt-extended's 422/msg.

The tokens these tests sign themselves (`claims`) are HS256 with ``JWT_SECRET_KEY`` and a
``fam`` claim: the shape issued before ES256, which keeps verifying while the secret is set
(the ES256 tokens' own tests: test_keys.py)."""

import base64
import json
import time

import jwt as pyjwt
import pytest

from helpers import APPID, JWT_KEY, assert_problem, claims_of
from wxauth.state import state

pytestmark = pytest.mark.databases


def b64url(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims(openid="o-tok", **overrides):
    now = int(time.time())
    return {"sub": openid, "iat": now, "nbf": now, "exp": now + 3600, "jti": "j",
            "type": "access", "fresh": False, "appid": APPID, "fam": "f1", "ver": 0, **overrides}


@pytest.fixture
def token(server):
    return server.login("o-tok")["access_token"]


def test_valid_minted_token_works(server, token):
    assert server.get("/profile", token=token).status_code == 200
    same_shape = pyjwt.encode(claims(fam=family_of(token)), JWT_KEY, algorithm="HS256")
    assert server.get("/profile", token=same_shape).status_code == 200


def test_a_token_of_no_session_is_refused(server, token):
    """Signed with the right key, naming a live user, but no session of theirs: refused (the
    session row is the truth, not the signature alone)."""
    assert_problem(server.get("/profile", token=pyjwt.encode(claims(), JWT_KEY,
                                                             algorithm="HS256")),
                   401, "token_revoked")


def test_no_header(server):
    assert_problem(server.get("/profile"), 401, "authorization_required")


@pytest.mark.parametrize("header", ["Bearer", "Bearer not.a.jwt", "Bearer abc", "Basic dXNlcjpw",
                                    "Bearer a.b.c.d"])
def test_malformed_header_or_token(server, header):
    assert_problem(server.get("/profile", headers={"Authorization": header}), 401, "token_invalid")


def test_alg_none_is_refused(server, token):
    forged = b64url({"alg": "none", "typ": "JWT"}) + "." + b64url(claims()) + "."
    assert_problem(server.get("/profile", token=forged), 401, "token_invalid")


def test_tampered_payload_is_refused(server, token):
    header, _, signature = token.split(".")
    forged = f"{header}.{b64url(claims(sub='o-someone-else'))}.{signature}"
    assert_problem(server.get("/profile", token=forged), 401, "token_invalid")


def test_wrong_key_is_refused(server, token):
    forged = pyjwt.encode(claims(), "another-key-of-at-least-32-bytes!!", algorithm="HS256")
    assert_problem(server.get("/profile", token=forged), 401, "token_invalid")


def test_other_algorithm_is_refused(server, token):
    forged = pyjwt.encode(claims(), JWT_KEY, algorithm="HS512")
    assert_problem(server.get("/profile", token=forged), 401, "token_invalid")


def test_expired(server, token):
    old = pyjwt.encode(claims(iat=1, nbf=1, exp=2), JWT_KEY, algorithm="HS256")
    assert_problem(server.get("/profile", token=old), 401, "token_expired")


def family_of(token: str) -> str:
    """The token's session (``sid``; ``fam`` in the HS256 tokens `claims` makes, the shape
    of the tokens from before ES256)."""
    return claims_of(token)["sid"]


def test_a_remembered_token_is_still_checked(app, server, token):
    """Verified tokens are remembered (wxauth.web.security): expiry,
    revocation and tampering are still caught on every request."""
    expires = int(time.time()) + 2
    short = pyjwt.encode(claims(exp=expires, fam=family_of(token)), JWT_KEY, algorithm="HS256")
    assert server.get("/profile", token=short).status_code == 200
    assert short in state(app).verified_tokens  # remembered…
    assert server.get("/profile", token=short).status_code == 200  # …and used from there
    header, _, signature = short.split(".")
    forged = f"{header}.{b64url(claims(sub='o-someone-else', exp=expires))}.{signature}"
    assert_problem(server.get("/profile", token=forged), 401, "token_invalid")

    other = pyjwt.encode(claims(fam=family_of(server.login("o-tok")["access_token"])),
                         JWT_KEY, algorithm="HS256")
    assert server.get("/profile", token=other).status_code == 200
    assert server.post("/auth/logout", token=other).status_code == 204
    assert_problem(server.get("/profile", token=other), 401, "token_revoked")

    time.sleep(max(0.0, expires - time.time()) + 0.1)
    assert_problem(server.get("/profile", token=short), 401, "token_expired")


def test_not_yet_valid(server, token):
    future = pyjwt.encode(claims(nbf=int(time.time()) + 3600), JWT_KEY, algorithm="HS256")
    assert_problem(server.get("/profile", token=future), 401, "token_invalid")


def test_refresh_type_is_not_an_access_token(server, token):
    wrong = pyjwt.encode(claims(type="refresh"), JWT_KEY, algorithm="HS256")
    assert_problem(server.get("/profile", token=wrong), 401, "token_invalid")


def test_refresh_token_is_refused_as_access_and_vice_versa(server):
    body = server.login("o-kinds")
    assert_problem(server.get("/profile", token=body["refresh_token"]), 401, "token_invalid")
    assert_problem(server.post("/auth/refresh", token=body["access_token"]), 401,
                   "token_invalid")


def test_refresh_rotates(server):
    body = server.login("o-refresh")
    claims_ = claims_of(body["refresh_token"])
    assert claims_["exp"] - claims_["iat"] == 30 * 86400
    response = server.post("/auth/refresh", token=body["refresh_token"])
    assert response.status_code == 200, response.text
    pair = response.json()
    assert set(pair) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert pair["refresh_token"] != body["refresh_token"]
    assert server.get("/profile", token=pair["access_token"]).status_code == 200
    second = server.post("/auth/refresh", token=pair["refresh_token"])
    assert second.status_code == 200


def test_replayed_refresh_token_revokes_the_family(server):
    body = server.login("o-replay")
    stolen = body["refresh_token"]
    fresh = server.post("/auth/refresh", token=stolen).json()  # the real client rotates
    assert_problem(server.post("/auth/refresh", token=stolen), 401, "token_revoked")  # replay
    # every token of that login is dead now, the legitimate new ones included
    assert_problem(server.get("/profile", token=fresh["access_token"]), 401, "token_revoked")
    assert_problem(server.post("/auth/refresh", token=fresh["refresh_token"]), 401,
                   "token_revoked")
    assert_problem(server.get("/profile", token=body["access_token"]), 401, "token_revoked")
    # another login of the same user is unaffected
    other = server.login("o-replay")
    assert server.get("/profile", token=other["access_token"]).status_code == 200


def test_logout_revokes_access_and_refresh(server):
    body = server.login("o-logout")
    other = server.login("o-logout")  # the same user on another phone
    response = server.post("/auth/logout", token=body["access_token"])
    assert response.status_code == 204 and response.content == b""
    assert_problem(server.get("/profile", token=body["access_token"]), 401, "token_revoked")
    assert_problem(server.post("/auth/refresh", token=body["refresh_token"]), 401,
                   "token_revoked")
    assert server.get("/profile", token=other["access_token"]).status_code == 200


def test_revoke_tokens_command(server, runner):
    first, second = server.login("o-revoke"), server.login("o-revoke")
    result = runner.invoke(args=["users", "revoke-tokens", "o-revoke"])
    assert result.exit_code == 0, result.output
    for body in (first, second):
        assert_problem(server.get("/profile", token=body["access_token"]), 401, "token_revoked")
        assert_problem(server.post("/auth/refresh", token=body["refresh_token"]), 401,
                       "token_revoked")
    again = server.login("o-revoke")
    assert server.get("/profile", token=again["access_token"]).status_code == 200


def test_unknown_user(server, token):
    ghost = pyjwt.encode(claims("o-never-logged-in"), JWT_KEY, algorithm="HS256")
    assert_problem(server.get("/profile", token=ghost), 401, "user_not_found")


def test_deleted_user(server, runner):
    body = server.login("o-deleted")
    result = runner.invoke(args=["users", "delete", "o-deleted", "--yes"])
    assert result.exit_code == 0, result.output
    assert_problem(server.get("/profile", token=body["access_token"]), 401, "user_not_found")
    assert_problem(server.post("/auth/refresh", token=body["refresh_token"]), 401,
                   "user_not_found")

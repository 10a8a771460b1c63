"""Key rotation over real processes (issue 23, points 1 and 2): two gunicorn instances on one
database; `flask keys rotate` run as an operator would, on "another host"; every instance
signs with the new key within SIGNING_KEYS_REFRESH, without a restart; old and new tokens
verify everywhere: on both instances, and with libraries nobody here wrote, following
``jwks_uri`` from the discovery document: the README's Python snippet (PyJWT's PyJWKClient)
and Node snippet (npm `jose`), run as written there. A token signed by a key never published
verifies nowhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest

import services
from helpers import ROOT, claims_of, free_port
from test_resilience_gunicorn import get, two_instances
from test_sessions_gunicorn import flask, log_in
from wxauth.infra import keys as codec

README = (ROOT / "README.md").read_text()
JOSE = ROOT / "tests" / "js" / "node_modules" / "jose"


def snippet(first_line: str) -> str:
    """The README code block that starts with `first_line`."""
    found = re.search(r"```\w+\n(" + re.escape(first_line) + r"\n.*?)```", README, re.S)
    assert found, f"README has no code block starting {first_line!r}"
    return found.group(1)


def run_driver(args: list[str], cwd: Path, issuer: str) -> list:
    """A verifier's driver run with WXAUTH_ISSUER=`issuer`: its JSON answer, one result per
    token."""
    done = subprocess.run(args, cwd=cwd, env=dict(os.environ, WXAUTH_ISSUER=issuer),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def python_verifier(tmp_path: Path, issuer: str):
    """verify(tokens) → one result per token: the claims, or the exception's class name,
    from the README's Python snippet in a process of its own."""
    (tmp_path / "verify_wxauth.py").write_text(snippet("# verify_wxauth.py"))
    driver = tmp_path / "py_driver.py"
    driver.write_text(
        "import json, sys\nfrom verify_wxauth import verify\nout = []\n"
        "for token in sys.argv[1:]:\n"
        "    try:\n        out.append(verify(token))\n"
        "    except Exception as exc:\n        out.append(type(exc).__name__)\n"
        "print(json.dumps(out))\n")

    return lambda tokens: run_driver([sys.executable, str(driver), *tokens], tmp_path, issuer)


def node_verifier(tmp_path: Path, issuer: str):
    """As `python_verifier`, with the README's Node snippet (jose); skipped without node
    (required under CI=true or REQUIRE_NODE)."""
    node = shutil.which("node")
    if not node or not JOSE.exists():
        if services.IN_CI or os.environ.get("REQUIRE_NODE"):
            pytest.fail("node and tests/js/node_modules (make node-deps) are required")
        pytest.skip("node or jose not installed (make node-deps)")
    folder = tmp_path / "node"
    folder.mkdir()
    (folder / "node_modules").symlink_to(JOSE.parent)
    (folder / "verify-wxauth.mjs").write_text(snippet("// verify-wxauth.mjs"))
    (folder / "driver.mjs").write_text(
        'import { verify } from "./verify-wxauth.mjs";\nconst out = [];\n'
        "for (const token of process.argv.slice(2)) {\n"
        "  try { out.push(await verify(token)); }\n"
        "  catch (error) { out.push(error.code ?? error.message); }\n}\n"
        "console.log(JSON.stringify(out));\n")

    return lambda tokens: run_driver([node, "driver.mjs", *tokens], folder, issuer)


def kid_of(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


def forged(token: str) -> str:
    """`token`'s claims signed by a key never published, under a kid of its own."""
    stranger = codec.generate("ES256")
    return jwt.encode(claims_of(token), stranger, algorithm="ES256",
                      headers={"kid": codec.public_jwk(stranger, "ES256")["kid"]})


def test_rotation_reaches_every_instance_and_every_verifier(production_env, emulator,
                                                            tmp_path):
    port_a = free_port()
    issuer = f"http://127.0.0.1:{port_a}"  # one public URL for both, as behind a balancer
    env = dict(production_env, JWT_ISSUER=issuer, SIGNING_KEYS_REFRESH="1")
    with two_instances(env, tmp_path, port_a) as (a, b):
        check_rotation(env, a.url, b.url, issuer, emulator, tmp_path)


def check_rotation(env, url_a: str, url_b: str, issuer: str, emulator, tmp_path) -> None:
    by_python = python_verifier(tmp_path, issuer)
    by_node = node_verifier(tmp_path, issuer)

    before = log_in(url_a, emulator, "o-rotation")["access_token"]
    old_kid = kid_of(before)
    assert kid_of(log_in(url_b, emulator, "o-rotation-b")["access_token"]) == old_kid
    assert "current" in flask(env, "keys", "list")

    started = time.monotonic()
    rotated = flask(env, "keys", "rotate")  # another host: a process of its own
    new_kid = re.search(r"key (\S+) now signs", rotated).group(1)
    pending = {url_a, url_b}
    after = {}
    while pending:  # every instance signs with it within SIGNING_KEYS_REFRESH (1 s here)
        assert time.monotonic() - started < 10, f"{pending} still sign with the old key"
        for url in list(pending):
            token = log_in(url, emulator, "o-rotation")["access_token"]
            if kid_of(token) == new_kid:
                after[url] = token
                pending.discard(url)
        time.sleep(0.2)
    assert new_kid != old_kid

    tokens = [before, after[url_a], after[url_b]]
    for url in (url_a, url_b):
        for token in tokens:
            assert get(url, "/profile", token).status_code == 200
    listing = flask(env, "keys", "list")
    assert re.search(rf"{re.escape(old_kid)}\s+ES256\s+retired", listing)
    assert re.search(rf"{re.escape(new_kid)}\s+ES256\s+current", listing)

    bad = forged(before)
    for verify in (by_python, by_node):
        results = verify([*tokens, bad])
        for token, result in zip(tokens, results):
            assert isinstance(result, dict), result
            assert result == {**claims_of(token), **result} and result["iss"] == issuer
        assert not isinstance(results[-1], dict)
    assert by_python([bad]) == ["PyJWKClientError"]  # "Unable to find a signing key"
    assert by_node([bad]) == ["ERR_JWKS_NO_MATCHING_KEY"]
    for url in (url_a, url_b):
        assert get(url, "/profile", bad).status_code == 401

"""Token signing keys as objects, text and JWKs: generation, PEM (PKCS#8) serialization, the
public JWK (RFC 7517) and its thumbprint (RFC 7638), all with `cryptography` and PyJWT's
public `jwt.algorithms` helpers.

Algorithms (JWA names, RFC 7518 / RFC 8037): ``ES256`` (ECDSA P-256 with SHA-256),
``RS256`` (RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys), ``EdDSA`` (Ed25519).
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

ASYMMETRIC = ("ES256", "RS256", "EdDSA")
RSA_BITS = 2048
# members of a public JWK by key type, the ones its RFC 7638 thumbprint hashes
THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"),
                      "OKP": ("crv", "kty", "x")}
_JWK_CODECS = {"ES256": ECAlgorithm, "RS256": RSAAlgorithm, "EdDSA": OKPAlgorithm}


def generate(algorithm: str):
    """A new private key (a `cryptography` key object) for `algorithm` (one of `ASYMMETRIC`;
    ValueError for another)."""
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"not an asymmetric JWT algorithm: {algorithm!r}")


def private_pem(key) -> str:
    """`key` as unencrypted PKCS#8 PEM text (encrypt it before storing)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def load_private(pem: str):
    """The private key object of PKCS#8 PEM text (ValueError when it is not one)."""
    return serialization.load_pem_private_key(pem.encode(), password=None)


def public_jwk(key, algorithm: str) -> dict[str, Any]:
    """The public JWK (a dict) of private or public `key`, with ``kid`` (its `thumbprint`),
    ``alg`` and ``use`` ("sig")."""
    public = key.public_key() if hasattr(key, "public_key") else key
    jwk = _JWK_CODECS[algorithm].to_jwk(public, as_dict=True)
    jwk.pop("key_ops", None)  # (RFC 7517 §4.3: not with "use")
    return {**jwk, "kid": thumbprint(jwk), "alg": algorithm, "use": "sig"}


def load_public(jwk: dict[str, Any]):
    """The public key object of a public JWK (`public_jwk`'s dict); its ``alg`` picks the
    codec. Raises KeyError or jwt.InvalidKeyError for a malformed one."""
    return _JWK_CODECS[jwk["alg"]].from_jwk(jwk)


def thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 thumbprint of a public JWK: base64url (no padding, 43 characters) of the
    SHA-256 of its required members as compact JSON in lexicographic order."""
    members = {name: jwk[name] for name in THUMBPRINT_MEMBERS[jwk["kty"]]}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":"),
                                       sort_keys=True).encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

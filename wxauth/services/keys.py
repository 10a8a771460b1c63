"""The keys that sign the login's JWTs, shared by every instance through the database.

With ``JWT_ALGORITHM`` ES256 (the default), RS256 or EdDSA, tokens are signed with the
current `SigningKey` of that algorithm and carry its ``kid`` (RFC 7638 thumbprint); other
services verify them with the published key set (``/.well-known/jwks.json``, `jwks`)
without holding any secret. With ``HS256`` tokens are signed with ``JWT_SECRET_KEY`` as
before and nothing is published. While ``JWT_SECRET_KEY`` is set, HS256 tokens (from before
an upgrade) keep verifying in every mode.

A key's life (``flask --app wsgi keys …``, `generate`, `rotate`, `prune`):
- staged: generated and published, not signing yet (``keys generate``);
- current: signs every new token (``keys rotate`` makes the newest staged key current, or a
  new one; with none at all, the first token signed generates one — development and a
  first production start alike);
- retired: the key before the current one, still published and verifying;
- pruned: deleted once every token it signed has expired (``keys prune``), never before.

Each process keeps the keys in a `KeyRing` (`AppState.keyring`) and reads them again every
``SIGNING_KEYS_REFRESH`` seconds, so a rotation on any host reaches every instance without
a restart; a token with a ``kid`` the process does not know makes it read them at once (at
most every `UNKNOWN_KID_RELOAD` seconds for unknown kids; the periodic reads and the reads
after generating a key do not count, so the first tokens of a key another worker or host
has just made are not refused because this process happened to read the keys a moment
earlier).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import jwt as pyjwt
from flask import current_app
from sqlalchemy import delete, select, update

from ..extensions import db
from ..infra import keys as codec
from ..models import SigningKey, utcnow
from ..state import state

log = logging.getLogger(__name__)

# seconds: a kid not known makes the process read the keys again, at most this often (a
# flood of tokens under made-up kids costs at most 10 reads a second per process)
UNKNOWN_KID_RELOAD = 0.1

ALGORITHMS = codec.ASYMMETRIC  # the algorithms a key of the database signs with


@dataclass(frozen=True)
class Signer:
    """The key new tokens are signed with: ``kid``, ``algorithm`` and the private key object."""

    kid: str
    algorithm: str
    private_key: Any


@dataclass(frozen=True)
class PublicKey:
    """A published key: ``algorithm`` and the public key object that verifies its tokens."""

    algorithm: str
    key: Any


@dataclass
class Snapshot:
    """What a `KeyRing` read from the database at ``loaded_at`` (monotonic seconds)."""

    signer: Signer | None = None
    public: dict[str, PublicKey] = field(default_factory=dict)  # by kid
    jwks: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    loaded_at: float = float("-inf")


class KeyRing:
    """The signing keys, as one process sees them (see the module docstring).

    Args:
        algorithm: ``JWT_ALGORITHM``; HS256 means no key of the database signs.
        refresh: seconds between two reads of the keys.
    """

    def __init__(self, algorithm: str, refresh: float):
        self.algorithm = algorithm
        self.refresh = refresh
        self._snapshot = Snapshot()
        self._lock = threading.Lock()
        self._unknown_kid_read_at = float("-inf")  # (monotonic) the last read for an unknown kid

    @property
    def asymmetric(self) -> bool:
        return self.algorithm in codec.ASYMMETRIC

    def _fresh(self, max_age: float) -> Snapshot:
        snapshot = self._snapshot
        if time.monotonic() - snapshot.loaded_at > max_age:
            snapshot = self.reload()
        return snapshot

    def reload(self) -> Snapshot:
        """Read the keys again (decrypting the current private key); returns the snapshot."""
        snapshot = Snapshot(loaded_at=time.monotonic())
        current = None
        for row in listing():
            jwk = json.loads(row.public_jwk)
            snapshot.public[row.kid] = PublicKey(row.algorithm, codec.load_public(jwk))
            snapshot.jwks["keys"].append(jwk)
            if (row.algorithm == self.algorithm and status(row) == "current"
                    and (current is None or row.activated_at >= current.activated_at)):
                current = row
        if current is not None:
            pem = state().cipher.decrypt(current.private_key)
            snapshot.signer = Signer(current.kid, current.algorithm, codec.load_private(pem))
        db.session.commit()  # (ends the read's transaction)
        self._snapshot = snapshot
        return snapshot

    def signer(self) -> Signer | None:
        """The current key of ``JWT_ALGORITHM`` (None for HS256); the first call with none
        in the database generates and activates one (`rotate`)."""
        if not self.asymmetric:
            return None
        snapshot = self._fresh(self.refresh)
        if snapshot.signer is None:
            with self._lock:
                snapshot = self.reload()
                if snapshot.signer is None:
                    # (keys of another algorithm stay current: during a rolling change of
                    # JWT_ALGORITHM the instances not yet changed go on signing with theirs)
                    key = rotate(self.algorithm, retire_other_algorithms=False)
                    quiet = current_app.debug or current_app.testing  # development
                    log.log(logging.INFO if quiet else logging.WARNING,
                            "No %s signing key was active: generated and activated kid=%s "
                            "(flask --app wsgi keys list)", self.algorithm, key.kid)
                    snapshot = self.reload()
        return snapshot.signer

    def public_key(self, kid: str) -> PublicKey | None:
        """The published key `kid`, or None when there is no such key (read again first
        when not known, at most every `UNKNOWN_KID_RELOAD` seconds)."""
        found = self._fresh(self.refresh).public.get(kid)
        now = time.monotonic()
        if found is None and now - self._unknown_kid_read_at > UNKNOWN_KID_RELOAD:
            self._unknown_kid_read_at = now
            found = self.reload().public.get(kid)
        return found

    def jwks(self) -> dict[str, Any]:
        """The JWK Set (RFC 7517 §5) of every published key: ``{"keys": [jwk, …]}``, oldest
        first."""
        return self._fresh(self.refresh).jwks


# --- signing: the key flask-jwt-extended's encode_key_loader hands out ------------------

_signing: contextvars.ContextVar[Signer | None] = contextvars.ContextVar("wxauth_signer",
                                                                        default=None)


@contextlib.contextmanager
def signing_with(signer: Signer | None):
    """Within the block, `encode_key` is `signer`'s private key (``JWT_SECRET_KEY`` when
    None): the key and the ``kid`` header of one token come from the same snapshot."""
    token = _signing.set(signer)
    try:
        yield
    finally:
        _signing.reset(token)


def encode_key(identity: Any = None):
    """flask-jwt-extended's ``encode_key_loader``: the key `signing_with` chose."""
    signer = _signing.get()
    return current_app.config["JWT_SECRET_KEY"] if signer is None else signer.private_key


def decode_key(header: dict[str, Any], payload: dict[str, Any]):
    """flask-jwt-extended's ``decode_key_loader``: the key a token's header names.

    A token with a ``kid``: that published key, if its algorithm is the header's ``alg``.
    A token without: ``JWT_SECRET_KEY`` for an HS256 token while it is set.

    Raises:
        jwt.InvalidTokenError: no such key, or the header's algorithm is not the key's.
    """
    kid = header.get("kid")
    if kid is None:
        secret = current_app.config.get("JWT_SECRET_KEY")
        if header.get("alg") == "HS256" and secret:
            return secret
        raise pyjwt.InvalidTokenError("the token names no signing key")
    found = state().keyring.public_key(kid) if isinstance(kid, str) else None
    if found is None:
        raise pyjwt.InvalidTokenError("the token's signing key is not published")
    if found.algorithm != header.get("alg"):
        raise pyjwt.InvalidTokenError("the token's algorithm is not its key's")
    return found.key


# --- the keys' life (flask --app wsgi keys …) ---------------------------------------------

def listing() -> list[SigningKey]:
    """Every key, oldest first."""
    return list(db.session.execute(select(SigningKey).order_by(SigningKey.created_at))
                .scalars())


def status(key: SigningKey) -> str:
    """``staged``, ``current`` or ``retired``."""
    if key.activated_at is None:
        return "staged"
    return "current" if key.retired_at is None else "retired"


def generate(algorithm: str) -> SigningKey:
    """Add a staged key of `algorithm` (published at once, signing after `rotate`); commits.
    ValueError for an algorithm that is not ES256, RS256 or EdDSA."""
    private = codec.generate(algorithm)
    jwk = codec.public_jwk(private, algorithm)
    key = SigningKey(kid=jwk["kid"], algorithm=algorithm, public_jwk=json.dumps(jwk),
                     private_key=state().cipher.encrypt(codec.private_pem(private)))
    db.session.add(key)
    db.session.commit()
    return key


def rotate(algorithm: str, *, retire_other_algorithms: bool = True) -> SigningKey:
    """Make the newest staged key of `algorithm` current (a new one when none is staged) and
    retire every other current key (of `algorithm` only, without
    `retire_other_algorithms`); commits. Every instance signs with it after its next read of
    the keys (``SIGNING_KEYS_REFRESH``)."""
    staged = db.session.execute(
        select(SigningKey).where(SigningKey.algorithm == algorithm,
                                 SigningKey.activated_at.is_(None))
        .order_by(SigningKey.created_at.desc()).limit(1)).scalar_one_or_none()
    key = staged or generate(algorithm)
    now = utcnow()
    retiring = update(SigningKey).where(SigningKey.activated_at.is_not(None),
                                        SigningKey.retired_at.is_(None),
                                        SigningKey.kid != key.kid)
    if not retire_other_algorithms:
        retiring = retiring.where(SigningKey.algorithm == algorithm)
    db.session.execute(retiring.values(retired_at=now)
                       .execution_options(synchronize_session=False))
    key.activated_at = now
    db.session.commit()
    return key


def publish_for(longest_token: int) -> timedelta:
    """How long a retired key stays published: `longest_token` (seconds: the longest token
    lifetime), the time instances may go on signing with it after its retirement
    (``SIGNING_KEYS_REFRESH``) and the decode leeway."""
    cfg = current_app.config
    return timedelta(seconds=longest_token + cfg["SIGNING_KEYS_REFRESH"]
                     + cfg["JWT_DECODE_LEEWAY"])


def prunable_after(key: SigningKey, longest_token: int) -> datetime | None:
    """When `key` may be pruned: its retirement plus `publish_for`; None while it signs or
    is staged."""
    return None if key.retired_at is None else key.retired_at + publish_for(longest_token)


def prune(longest_token: int, now: datetime | None = None) -> list[str]:
    """Delete the retired keys whose every token has expired (`prunable_after` ≤ `now`);
    `longest_token`: the longest token lifetime in seconds. Commits; returns their kids."""
    now = now or utcnow()
    gone = [key.kid for key in listing()
            if key.retired_at is not None and prunable_after(key, longest_token) <= now]
    if gone:
        db.session.execute(delete(SigningKey).where(SigningKey.kid.in_(gone)))
        db.session.commit()
    return gone


class KeyStateError(ValueError):
    """A key command cannot apply to this key (unknown, or still signing)."""


def remove_retired(kid: str) -> None:
    """Delete retired key `kid` now, whatever tokens it signed (a leaked key); commits.

    Raises:
        KeyStateError: no such key, or it is staged or current (rotate first).
    """
    key = db.session.get(SigningKey, kid)
    if key is None:
        raise KeyStateError(f"no key {kid}")
    if key.retired_at is None:
        raise KeyStateError(f"key {kid} is {status(key)}: `keys rotate` first, then delete it")
    db.session.delete(key)
    db.session.commit()


def published() -> dict[str, Any]:
    """The JWK Set of every published key (``{"keys": [jwk, …]}``; `KeyRing.jwks`)."""
    return state().keyring.jwks()

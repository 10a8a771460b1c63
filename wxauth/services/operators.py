"""Operators of the support console: who they are, their roles, how they sign in (issue 24).

``flask operators add NAME --role …`` (`add`) creates one with a random initial password
(argon2id-hashed; changed at the first sign-in) and a TOTP secret (RFC 6238: 6 digits, 30 s),
both shown once; ``reset`` makes new ones (the operator enrolls again). Signing in
(`sign_in`) takes the password and a current code: a code is accepted within one step either
side and once only (the step of the last one accepted is kept, and moved forward by a
conditional UPDATE, so two workers cannot both accept it); `MAX_FAILURES` failures in a row
lock the operator for `LOCK_MINUTES`. A wrong name, password or code all answer the same
`SignInFailed`; only someone who gave the right password and code learns that the operator is
locked or disabled (`OperatorLocked`, `OperatorDisabled`). Destructive actions ask for a
fresh code again (`confirm_code`).

Roles (`ROLES`, each with the rights of the ones before): ``viewer`` searches and reads
(phone numbers masked), ``support`` also disables and enables, ends sessions and sees full
phone numbers, ``admin`` also deletes accounts, exports, manages operators and reads the
audit trail (`may`).
"""

from __future__ import annotations

import functools
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import or_, select, update

from ..extensions import db
from ..models import Operator, utcnow
from . import audit

ROLES = ("viewer", "support", "admin")
# what each right needs (the least role)
RIGHTS = {"read": "viewer", "see_phone": "support", "disable": "support",
          "end_sessions": "support", "delete": "admin", "export": "admin",
          "manage_operators": "admin", "read_audit": "admin"}
NAME_SHAPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
MAX_FAILURES = 5
LOCK_MINUTES = 15
PASSWORD_MIN = 12
ISSUER = "wxauth console"
STEP = 30  # seconds (RFC 6238)

_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory defaults


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against when no operator has the name: a wrong name costs as much as
    a wrong password. Made on first use: argon2 takes about as long as a process's imports."""
    return _hasher.hash(secrets.token_urlsafe(16))


class OperatorError(ValueError):
    """An operator cannot be added or changed: the message says why (for the CLI)."""


class SignInFailed(Exception):
    """Wrong name, password or code (one answer for all)."""


class OperatorLocked(Exception):
    """The right password and code, but the operator is locked until `until`."""

    def __init__(self, until: datetime):
        super().__init__(until.isoformat())
        self.until = until


class OperatorDisabled(Exception):
    """The right password and code, but the operator is disabled."""


@dataclass(frozen=True)
class Enrollment:
    """What ``operators add`` and ``reset`` show once."""

    operator: Operator
    password: str
    uri: str  # otpauth://totp/…


def may(role: str, right: str) -> bool:
    """Whether `role` holds `right` (a key of `RIGHTS`)."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(RIGHTS[right])


def mask_phone(number: str | None) -> str | None:
    """``13812341234`` → ``138****1234``: the first 3 and last 4 digits kept."""
    if not number:
        return number
    if len(number) <= 7:
        return "*" * len(number)
    return number[:3] + "*" * (len(number) - 7) + number[-4:]


def provisioning_uri(operator: Operator) -> str:
    """The operator's ``otpauth://`` URI (the secret, for an authenticator app)."""
    return pyotp.TOTP(operator.totp_secret).provisioning_uri(name=operator.name,
                                                            issuer_name=ISSUER)


def find(name: str) -> Operator | None:
    return db.session.execute(select(Operator).where(Operator.name == name)).scalar_one_or_none()


def all_operators() -> list[Operator]:
    return list(db.session.execute(select(Operator).order_by(Operator.name)).scalars())


def _new_secrets(operator: Operator) -> Enrollment:
    password = secrets.token_urlsafe(12)
    operator.password_hash = _hasher.hash(password)
    operator.must_change_password = True
    operator.totp_secret = pyotp.random_base32()
    operator.totp_last_step = None
    operator.enrolled_at = None
    operator.failed_count = 0
    operator.locked_until = None
    return Enrollment(operator, password, provisioning_uri(operator))


def add(name: str, role: str, *, by: str, address: str | None = None) -> Enrollment:
    """Create operator `name` with `role` (committed, audited ``operator_add``)."""
    if not NAME_SHAPE.match(name or ""):
        raise OperatorError(f"name {name!r}: use 1 to 64 letters, digits, '.', '_' or '-'")
    if role not in ROLES:
        raise OperatorError(f"role {role!r}: choose from {', '.join(ROLES)}")
    if find(name) is not None:
        raise OperatorError(f"an operator named {name!r} exists already")
    operator = Operator(name=name, role=role, session_version=0, created_at=utcnow())
    enrollment = _new_secrets(operator)
    db.session.add(operator)
    audit.record(by, "operator_add", address=address, target=f"operator:{name}",
                 after={"name": name, "role": role}, commit=False)
    db.session.commit()
    return enrollment


def _existing(name: str) -> Operator:
    operator = find(name)
    if operator is None:
        raise OperatorError(f"no operator named {name!r}")
    return operator


def disable(name: str, *, by: str, address: str | None = None) -> Operator:
    """Disable operator `name`: refused at sign-in, their console sessions end at their next
    request (committed, audited ``operator_disable``)."""
    operator = _existing(name)
    before = operator.disabled_at is not None
    operator.disabled_at = operator.disabled_at or utcnow()
    operator.session_version += 1
    audit.record(by, "operator_disable", address=address, target=f"operator:{name}",
                 before={"disabled": before}, after={"disabled": True}, commit=False)
    db.session.commit()
    return operator


def reset(name: str, *, by: str, address: str | None = None) -> Enrollment:
    """New initial password and TOTP secret for `name` (enrolls again at the next sign-in),
    unlocked and enabled; their console sessions end (committed, audited
    ``operator_reset``)."""
    operator = _existing(name)
    before = {"disabled": operator.disabled_at is not None,
              "locked": _locked(operator, utcnow())}
    enrollment = _new_secrets(operator)
    operator.disabled_at = None
    operator.session_version += 1
    audit.record(by, "operator_reset", address=address, target=f"operator:{name}",
                 before=before, after={"disabled": False, "locked": False,
                                       "enrolled": False}, commit=False)
    db.session.commit()
    return enrollment


def _locked(operator: Operator, now: datetime) -> bool:
    return operator.locked_until is not None and operator.locked_until > now


def _password_ok(operator: Operator | None, password: str) -> bool:
    try:
        _hasher.verify(operator.password_hash if operator else _dummy_hash(), password or "")
    except (VerificationError, InvalidHashError):
        return False
    return operator is not None


def accept_code(operator: Operator, code: str, now: float | None = None) -> bool:
    """Whether `code` is a current TOTP code of `operator` (one step either side) not used
    before; accepting it records its step (committed), so it is never accepted again."""
    code = (code or "").strip()
    # ("": a secret no configured SESSION_KEY_ENCRYPTION_KEY opens: never a key anyone knows)
    if not re.fullmatch(r"\d{6}", code) or not operator.totp_secret:
        return False
    totp = pyotp.TOTP(operator.totp_secret)
    current = int((time.time() if now is None else now) // STEP)
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.at(step * STEP), code):
            moved = db.session.execute(
                update(Operator).where(Operator.id == operator.id,
                                       or_(Operator.totp_last_step.is_(None),
                                           Operator.totp_last_step < step))
                .values(totp_last_step=step).execution_options(synchronize_session=False))
            db.session.commit()
            db.session.refresh(operator)
            return moved.rowcount == 1
    return False


def sign_in(name: str, password: str, code: str, *, address: str | None) -> Operator:
    """Check a sign-in (audited: ``sign_in``, ``sign_in_failed``, ``lockout``).

    An operator not enrolled yet (no code proved since ``add`` or ``reset``) signs in with
    the password alone, and must then enroll (`enroll`) and change the password
    (`change_password`) before anything else.

    Raises:
        SignInFailed: wrong name, password or code (counted: the `MAX_FAILURES`-th locks).
        OperatorLocked, OperatorDisabled: the right password and code, refused all the same.
    """
    now = utcnow()
    operator = find(name) if name else None
    password_ok = _password_ok(operator, password)
    if operator is None:
        audit.record(name or "-", "sign_in_failed", address=address,
                     detail={"why": "wrong name, password or code"})
        raise SignInFailed()
    locked = _locked(operator, now)
    enrolled = operator.enrolled_at is not None
    code_ok = password_ok and (not enrolled or accept_code(operator, code))
    if not code_ok:
        lock = False
        if not locked:
            operator.failed_count += 1
            lock = operator.failed_count >= MAX_FAILURES
            if lock:
                operator.locked_until = now + timedelta(minutes=LOCK_MINUTES)
                operator.failed_count = 0
        audit.record(name, "sign_in_failed", address=address, target=f"operator:{name}",
                     detail={"why": "wrong password" if not password_ok else "wrong code",
                             "while_locked": locked}, commit=False)
        if lock:
            audit.record(name, "lockout", address=address, target=f"operator:{name}",
                         detail={"minutes": LOCK_MINUTES}, commit=False)
        db.session.commit()
        raise SignInFailed()
    if operator.disabled_at is not None or locked:
        audit.record(name, "sign_in_failed", address=address, target=f"operator:{name}",
                     detail={"why": "disabled" if operator.disabled_at else "locked"})
        if operator.disabled_at is not None:
            raise OperatorDisabled()
        raise OperatorLocked(operator.locked_until)
    operator.failed_count = 0
    operator.last_sign_in_at = now
    if _hasher.check_needs_rehash(operator.password_hash):
        operator.password_hash = _hasher.hash(password)
    audit.record(name, "sign_in", address=address, target=f"operator:{name}",
                 detail={"enrolled": enrolled}, commit=False)
    db.session.commit()
    return operator


def enroll(operator: Operator, code: str, *, address: str | None) -> bool:
    """The first code from the operator's authenticator: enrolled when it is right
    (audited ``enroll``)."""
    if not accept_code(operator, code):
        return False
    operator.enrolled_at = utcnow()
    audit.record(operator.name, "enroll", address=address, target=f"operator:{operator.name}",
                 commit=False)
    db.session.commit()
    return True


def change_password(operator: Operator, new: str, *, address: str | None) -> None:
    """Set the operator's own password (at least `PASSWORD_MIN` characters; audited
    ``password_change``, without it)."""
    if len(new or "") < PASSWORD_MIN:
        raise OperatorError(f"the password needs at least {PASSWORD_MIN} characters")
    if _password_ok(operator, new):
        raise OperatorError("choose a password other than the initial one")
    operator.password_hash = _hasher.hash(new)
    operator.must_change_password = False
    audit.record(operator.name, "password_change", address=address,
                 target=f"operator:{operator.name}", commit=False)
    db.session.commit()

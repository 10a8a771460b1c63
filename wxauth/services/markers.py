"""The markers an account deletion leaves: who was here, without saying who.

A marker is hex(HMAC-SHA256(``ERASURE_KEY``, identity)) of each identity the deletion
erased, stored in ``deleted_subjects`` (`DeletedSubject`): one per app user
(``openid\\0<appid>\\0<openid>``) and one per unionid (``unionid\\0<unionid>``). Without the
key a marker cannot be turned back into an openid or unionid, nor tested against a guessed
one. A first login whose identity matches a marker is a returning person
(`wxauth.services.login`): not "new" again, so the once-only new-user gift is not given twice.

The key is its own setting (not derived from ``JWT_SECRET_KEY`` or
``SESSION_KEY_ENCRYPTION_KEY``, which are rotated): with another key no marker matches again.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Iterable
from datetime import datetime

from flask import current_app
from sqlalchemy import bindparam, select

from ..extensions import db
from ..models import DeletedSubject


def _digest(identity: str) -> str:
    key = current_app.config["ERASURE_KEY"].encode()
    return hmac.new(key, identity.encode(), hashlib.sha256).hexdigest()


def of_user(appid: str, openid: str) -> str:
    """The marker of an app user."""
    return _digest(f"openid\0{appid}\0{openid}")


def of_unionid(unionid: str) -> str:
    """The marker of a unionid (the person in every app of the Open Platform account)."""
    return _digest(f"unionid\0{unionid}")


def digests(appid: str, openid: str, unionid: str | None = None) -> list[str]:
    """The markers of an app user and of its unionid, when it has one."""
    return [of_user(appid, openid), *([of_unionid(unionid)] if unionid else [])]


@functools.cache
def select_known_stmt():
    """SELECT the markers among ``:digests`` (a list), a Core statement built once (a
    first login runs it)."""
    digest = DeletedSubject.__table__.c.digest
    return select(digest).where(digest.in_(bindparam("digests", expanding=True)))


def known(candidates: Iterable[str]) -> set[str]:
    """Those of these markers a deletion left (one query)."""
    return set(db.session.execute(select_known_stmt(),
                                  {"digests": list(candidates)}).scalars())


def add(found: Iterable[str], now: datetime) -> None:
    """Store these markers in the current transaction (no commit); those already stored
    (the person deleted an account before) are skipped."""
    wanted = set(found)
    if not wanted:
        return
    stored = set(db.session.execute(select(DeletedSubject.digest)
                                    .where(DeletedSubject.digest.in_(wanted))).scalars())
    rows = [{"digest": digest, "created_at": now} for digest in sorted(wanted - stored)]
    if rows:
        db.session.execute(DeletedSubject.__table__.insert(), rows)


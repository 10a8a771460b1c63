"""The person's own rights: deleting their account, exporting what is stored about them.

"The person" is the account (`Account`): the app users sharing a unionid, in every
mini-program this server serves; an app user without unionid is an account of its own.

Deleting erases (in one transaction, with the account's row locked):
- every app user of the account: openid, unionid, session_key, nickname, avatar, gender,
  place fields, phone number; the account row;
- every session of theirs (the rows, with their client addresses and User-Agents): every
  token of theirs names a session and a user that no longer exist (401 user_not_found; a
  token older than its user is refused even when the person comes back,
  `sessions.user_for_claims`);
- after the commit, the avatar files no other user uses (`profile.forget_avatars`).
It keeps:
- a marker per identity (`markers`: HMAC under ``ERASURE_KEY``, no openid or unionid in
  clear), so that the person coming back is a returning person, not a new one;
- the login log's rows (``login_events``) until ``LOGIN_LOG_RETENTION_DAYS`` ends them
  (network logs must be kept six months), no longer linked to a user (``user_id`` NULL).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import delete, select, update

from ..errors import Problem
from ..extensions import db
from ..i18n import _l
from ..models import Account, LoginEvent, LoginSession, User, utcnow
from ..state import state
from . import login_log, markers, profile, programs, sessions, signals

log = logging.getLogger(__name__)


def delete_own_account(user: User, code: str) -> None:
    """``DELETE /profile``: `user` deletes their account, confirmed by a fresh ``wx.login``
    `code` of the same person: code2Session with the user's app must name the same openid.

    Raises:
        Problem(confirmation_mismatch) when the code is another person's; the WeChat errors
        of code2Session (InvalidCode, CodeUsed, WeChatTimeout…); nothing is erased then.
    """
    confirmed = programs.get(user.appid).code2session(code)
    if confirmed.openid != user.openid:
        raise Problem("confirmation_mismatch", _l(
            "The confirmation code is not from the user of this token: call wx.login() on the "
            "user's own device and send its code."))
    erase_account(user.account_id)


def erase_account(account_id: int) -> list[int]:
    """Erase account `account_id` and everything of its app users (see the module docstring);
    commits, then deletes avatar files and sends `account_deleted`.

    Returns:
        The ids of the app users erased.

    Raises:
        Problem(user_not_found) when there is no such account (already deleted).
    """
    now = utcnow()
    account = db.session.execute(select(Account).where(Account.id == account_id)
                                 .with_for_update()).scalar_one_or_none()
    if account is None:
        db.session.rollback()
        raise Problem("user_not_found", _l("This account no longer exists."))
    users = list(db.session.execute(select(User).where(User.account_id == account_id)
                                    .order_by(User.id).with_for_update()).scalars())
    user_ids = [user.id for user in users]
    avatars = [user.avatar_url for user in users]
    found = {markers.of_unionid(account.unionid)} if account.unionid else set()
    for user in users:
        found.update(markers.digests(user.appid, user.openid, user.unionid))
    live = [session.id for session in sessions.live_sessions(user_ids)]
    markers.add(found, now)
    if user_ids:
        db.session.execute(update(LoginEvent).where(LoginEvent.user_id.in_(user_ids))
                           .values(user_id=None).execution_options(synchronize_session=False))
        db.session.execute(delete(LoginSession).where(LoginSession.user_id.in_(user_ids))
                           .execution_options(synchronize_session=False))
        db.session.execute(delete(User).where(User.id.in_(user_ids))
                           .execution_options(synchronize_session=False))
    db.session.execute(delete(Account).where(Account.id == account_id)
                       .execution_options(synchronize_session=False))
    db.session.commit()
    for user in users:
        db.session.expunge(user)
    db.session.expunge(account)
    log.info("account %s deleted (%d app users, %d live sessions ended)", account_id,
             len(user_ids), len(live))
    profile.forget_avatars(state().media, avatars)
    signals.send_account_deleted(account_id, user_ids)
    return user_ids


def export(user: User) -> dict[str, Any]:
    """``GET /profile/export``: everything stored about `user`'s person, for the export
    schema: ``account`` (the Account), ``users`` (its app users, with their
    ``last_login_at`` and disable fields), ``sessions`` (every session row of theirs, live
    or ended), ``login_events`` (their login-log rows, newest first), ``exported_at``.
    Never the session_key (deferred, not loaded) nor any token material.
    """
    account = db.session.get(Account, user.account_id)
    users = list(db.session.execute(select(User).where(User.account_id == user.account_id)
                                    .order_by(User.id)).scalars())
    user_ids = [u.id for u in users]
    return {
        "exported_at": utcnow(),
        "account": account,
        "users": users,
        "sessions": list(db.session.execute(
            select(LoginSession).where(LoginSession.user_id.in_(user_ids))
            .order_by(LoginSession.created_at.desc())).scalars()),
        "login_events": login_log.latest(user_ids, limit=None),
    }

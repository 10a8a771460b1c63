"""Operators' actions on people: disable and enable a user (one app) or an account (the
person in every app).

Disabling stores who (the operator), when and why, bumps the token version of the users
concerned and marks their live sessions ended (reason ``disabled``). From the next request
on, on every worker and instance, their tokens are refused with 403 ``user_disabled`` (the
per-request user check reads the flags from the shared database, `sessions.user_for_claims`),
refresh included; a login is refused with the same problem (`login.UserDisabled`), writing
nothing but its login-log row. Enabling clears the flags: logins work again, tokens issued
before the disable stay refused (401 ``token_revoked``: their version is old).
"""

from __future__ import annotations

from sqlalchemy import select, update

from ..extensions import db
from ..models import Account, User, utcnow
from . import sessions

REASON_MAX = 255  # characters (the column's size)
BY_MAX = 64


def disable_user(user: User, *, by: str, reason: str) -> list[str]:
    """Disable `user` (one app user); returns the ids of the sessions ended."""
    _disable(user, by, reason)
    return _revoke([user.id])


def enable_user(user: User) -> None:
    """Enable `user` again (its account's own disable, if any, stays)."""
    _enable(user)
    db.session.commit()


def disable_account(account: Account, *, by: str, reason: str) -> list[str]:
    """Disable the person of `account` in every app, present and future; returns the ids of
    the sessions ended."""
    _disable(account, by, reason)
    return _revoke(account_user_ids(account))


def enable_account(account: Account) -> None:
    """Enable `account` again (its users' own disables, if any, stay)."""
    _enable(account)
    db.session.commit()


def account_user_ids(account: Account) -> list[int]:
    """The ids of the account's app users."""
    return list(db.session.execute(select(User.id).where(User.account_id == account.id))
                .scalars())


def _disable(row: User | Account, by: str, reason: str) -> None:
    row.disabled_at = utcnow()
    row.disabled_by = by[:BY_MAX]
    row.disabled_reason = reason[:REASON_MAX]


def _enable(row: User | Account) -> None:
    row.disabled_at = row.disabled_by = row.disabled_reason = None


def revoke_tokens(user_ids: list[int]) -> None:
    """Refuse every token issued so far to these users (401 token_revoked): their token
    version is bumped, in the current transaction (not committed)."""
    if user_ids:
        db.session.execute(update(User).where(User.id.in_(user_ids))
                           .values(token_version=User.token_version + 1)
                           .execution_options(synchronize_session=False))


def _revoke(user_ids: list[int]) -> list[str]:
    """Every token of these users refused (`revoke_tokens`), their sessions marked ended;
    commits."""
    revoke_tokens(user_ids)
    db.session.flush()
    ended = [session.id for session in sessions.live_sessions(user_ids)]
    sessions.mark_ended(ended, "disabled")
    db.session.commit()
    return ended

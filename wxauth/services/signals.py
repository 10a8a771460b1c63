"""Signals (blinker, as Flask's own) sent after the transaction of a login, a phone binding or
an account deletion committed.

Connect to them to hang application logic on new people, e.g. a new-user gift that a person
may claim once whichever of the company's mini-programs they come from::

    from wxauth.services.signals import account_created

    @account_created.connect
    def give_gift(app, account, user, new, **extra):
        if new:  # not a person who deleted their account and came back
            ...  # account.id is the person; user is the app user that brought them

- ``user_created(app, user, new)``: a login created the app user's row: the first login of
  an openid in an app (`new` True), or the first since the person deleted their account
  (`new` False: a marker of the deletion matched, `wxauth.services.markers`).
- ``account_created(app, account, user, new)``: a login created the person's account: the
  first time a person is seen in any app (`new` True; one per unionid, also when first
  logins in two apps happen at the same moment), or a person returning after deleting their
  account (`new` False).
- ``accounts_merged(app, account, merged_account_id)``: a unionid arrived late and joined
  two accounts of one person; ``merged_account_id`` no longer exists.
- ``phone_bound(app, user, at_login)``: the user's phone number was stored (``user.phone_number``,
  ``pure_phone_number``, ``country_code``), from ``POST /profile/phone`` or from the
  ``phone_code`` of ``POST /auth/login`` (`at_login` True): link the application's own
  pre-registered members by number here.
- ``account_deleted(app, account_id, user_ids)``: the person deleted their account
  (``DELETE /profile``), or an operator did (``flask accounts delete``): the account and its
  app users (these ids) no longer exist; erase what the application keeps under them.
Receivers run in the request; an exception in one is logged and does not fail the login.
"""

from __future__ import annotations

import logging

from blinker import Namespace
from flask import current_app

_signals = Namespace()
user_created = _signals.signal("user-created")
account_created = _signals.signal("account-created")
accounts_merged = _signals.signal("accounts-merged")
phone_bound = _signals.signal("phone-bound")
account_deleted = _signals.signal("account-deleted")

log = logging.getLogger(__name__)


def _send(signal, **kwargs) -> None:
    app = current_app._get_current_object()
    for receiver in signal.receivers_for(app):
        try:
            receiver(app, **kwargs)
        except Exception:
            log.exception("receiver %r of %s failed", receiver, signal.name)


def send_after_login(result) -> None:
    """Send the signals a committed `wxauth.services.login.LoginResult` calls for."""
    if result.user_created:
        _send(user_created, user=result.user, new=result.is_new_user)
    if result.account_created:
        _send(account_created, account=result.account, user=result.user,
              new=result.is_new_account)
    if result.merged_account_id is not None:
        _send(accounts_merged, account=result.account, merged_account_id=result.merged_account_id)


def send_phone_bound(user, *, at_login: bool) -> None:
    """Send `phone_bound` for `user`, whose phone number was just committed."""
    _send(phone_bound, user=user, at_login=at_login)


def send_account_deleted(account_id: int, user_ids: list[int]) -> None:
    """Send `account_deleted` for an erased account (after its transaction committed)."""
    _send(account_deleted, account_id=account_id, user_ids=user_ids)

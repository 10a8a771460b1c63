"""Signals (blinker, as Flask's own) sent after a login's transaction committed.

Connect to them to hang application logic on new people, e.g. a new-user gift that a person
may claim once whichever of the company's mini-programs they come from::

    from wxauth.services.signals import account_created

    @account_created.connect
    def give_gift(app, account, user, **extra):
        ...  # account.id is the person; user is the app user that brought them

- ``user_created(app, user)``: the first login of an openid in an app.
- ``account_created(app, account, user)``: the first time a person is seen in any app (one
  per unionid, also when first logins in two apps happen at the same moment).
- ``accounts_merged(app, account, merged_account_id)``: a unionid arrived late and joined
  two accounts of one person; ``merged_account_id`` no longer exists.
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
    if result.is_new_user:
        _send(user_created, user=result.user)
    if result.is_new_account:
        _send(account_created, account=result.account, user=result.user)
    if result.merged_account_id is not None:
        _send(accounts_merged, account=result.account, merged_account_id=result.merged_account_id)

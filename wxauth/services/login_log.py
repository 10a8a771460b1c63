"""The login log: one `LoginEvent` row (table ``login_events``) per login attempt.

- A success (outcome ``new`` or ``returning``) is added to the login's own transaction by
  `add_success`: no commit of its own.
- A failure (outcome: the problem code answered, with WeChat's ``errcode`` when it gave one)
  is written by `record_failure` in a short transaction of its own, after the failed login
  rolled back. During a database outage nothing is written (the login answers its 503 at
  once), and a write that fails is logged as a warning, never answered: the log never turns
  an answer into a 500.
- Refused logins of a flood (429 ``rate_limited``, before the request's body is read, so no
  appid) are counted, not written one by one: one row per (client address, minute), ``at``
  the minute's start, ``count`` its refusals, ``user_agent`` the first's. The rate limit
  counts them in its store (Redis, or the process) and hands each minute out once it has
  ended (`wxauth.infra.ratelimit`, the refusal book) to the next login, anywhere, which
  INSERTs its row with the final count (`write_rate_limited`): one write per address and
  minute, however big the flood; no write during the minute. So a minute's row appears with
  the first login after it (plus a few seconds), or when `prune` runs, which first writes
  every minute still in the book (the current one too: a later refusal in that minute
  then makes a second row for it). While Redis is down each worker books its own refusals:
  a row per worker for that address and minute, their counts adding up. Counts lost: those
  of a worker that dies with its in-process book, or a write that fails (logged).
- `prune` deletes what is older than ``LOGIN_LOG_RETENTION_DAYS``; `latest` reads a user's
  latest rows.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError

from ..errors import is_database_outage, problem_code
from ..extensions import db
from ..infra.ratelimit import Refusals
from ..models import LoginEvent, LoginSession, User, utcnow
from ..state import state

log = logging.getLogger(__name__)

USER_AGENT_MAX = 512  # characters kept of a User-Agent (the column's size)
ADDRESS_MAX = 45  # an IPv6 address in text
PRUNE_BATCH = 5000  # rows per DELETE


@dataclass(frozen=True)
class Client:
    """Who is logging in, as the web layer saw it: the client's address (after
    ``TRUSTED_PROXIES``) and its User-Agent (WeChat's names the device model and the WeChat
    version). Both cut to their columns' sizes."""

    address: str | None = None
    user_agent: str | None = None

    def __post_init__(self):
        if self.address is not None:
            object.__setattr__(self, "address", self.address[:ADDRESS_MAX])
        if self.user_agent is not None:
            object.__setattr__(self, "user_agent", self.user_agent[:USER_AGENT_MAX])


def _row(at: datetime, appid: str | None, user_id: int | None, client: Client, outcome: str,
         errcode: int | None = None, count: int = 1) -> dict:
    return {"at": at, "appid": appid, "user_id": user_id, "client_address": client.address,
            "user_agent": client.user_agent, "outcome": outcome, "errcode": errcode,
            "count": count}


@functools.cache
def insert_event_stmt():
    """INSERT a login-log row (the values as parameters): built once, as the login's
    statements are (`services.login`)."""
    return LoginEvent.__table__.insert()


def add_success(user: User, is_new_user: bool, client: Client, now: datetime) -> None:
    """Add the row of a successful login to the current transaction (the login's: committed
    with it)."""
    db.session.execute(insert_event_stmt(),
                       _row(now, user.appid, user.id, client,
                            "new" if is_new_user else "returning"))


def record_failure(appid: str | None, client: Client, exc: BaseException,
                   user_id: int | None = None) -> None:
    """Write the row of a failed login: outcome = the problem code `exc` answers
    (``internal_error`` for an unexpected one), ``errcode`` = WeChat's when `exc` carries
    one. Rolls back the session first; never raises (see the module docstring)."""
    if is_database_outage(exc):
        return
    code = problem_code(exc) or "internal_error"
    errcode = getattr(exc, "errcode", None)
    try:
        db.session.rollback()
        db.session.execute(insert_event_stmt(),
                           _row(utcnow(), appid, user_id, client, code,
                                errcode if isinstance(errcode, int) else None))
        db.session.commit()
    except SQLAlchemyError as error:
        db.session.rollback()
        log.warning("login log: a failed login (%s) was not recorded: %s", code,
                    type(error).__name__)


def write_rate_limited(refusals: list[Refusals]) -> None:
    """INSERT the rows of these closed minutes' refusals (see the module docstring), in one
    statement and a transaction of its own; never raises."""
    if not refusals:
        return
    try:
        db.session.execute(insert_event_stmt(), [
            _row(refused.minute, None, None, Client(refused.address, refused.user_agent),
                 "rate_limited", count=refused.count) for refused in refusals])
        db.session.commit()
    except SQLAlchemyError as error:
        db.session.rollback()
        log.warning("login log: %d rate-limited logins were not recorded: %s",
                    sum(refused.count for refused in refusals), type(error).__name__)


def latest(user_ids: list[int], limit: int | None = 20) -> list[LoginEvent]:
    """The latest `limit` login-log rows of these users (every one when None), newest
    first."""
    return list(db.session.execute(
        select(LoginEvent).where(LoginEvent.user_id.in_(user_ids))
        .order_by(LoginEvent.at.desc(), LoginEvent.id.desc()).limit(limit)).scalars())


def prune(days: int, refresh_lifetime: int) -> tuple[int, int]:
    """Delete the login-log rows older than `days`, and the sessions that ended, or expired
    (last used more than `refresh_lifetime` seconds before), more than `days` ago; in batches
    of `PRUNE_BATCH` rows, a transaction each. Writes the rate limit's refusals not written
    yet first (`write_rate_limited`).

    Returns:
        (login-log rows deleted, sessions deleted).
    """
    write_rate_limited(state().login_rate_limit.flush())
    cutoff = utcnow() - timedelta(days=days)
    events = _delete_in_batches(LoginEvent, LoginEvent.at < cutoff)
    expired = cutoff - timedelta(seconds=refresh_lifetime)
    sessions = _delete_in_batches(
        LoginSession, (LoginSession.ended_at < cutoff)
        | (LoginSession.ended_at.is_(None) & (LoginSession.last_used_at < expired)))
    return events, sessions


def _delete_in_batches(model, condition) -> int:
    deleted = 0
    while True:
        ids = list(db.session.execute(select(model.id).where(condition).limit(PRUNE_BATCH))
                   .scalars())
        if not ids:
            return deleted
        db.session.execute(delete(model).where(model.id.in_(ids)))
        db.session.commit()
        deleted += len(ids)

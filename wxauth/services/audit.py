"""The audit trail: every operator action, in the console or on the command line (issue 24).

The application only adds rows (`record`) and reads them (`search`); `prune` deletes those
older than ``AUDIT_RETENTION_DAYS`` (``flask logs prune``), nothing else deletes or changes
one. A row says who (`AuditEvent.operator`), when, from which address, what (``action``), on
whom (``target``), why (``reason``), and the fields before and after; ``detail`` holds the
rest (search terms, what a refused request lacked). No row ever holds a password, a TOTP code
or secret, a session_key or a token: callers pass field values, and `record` refuses the
names of secrets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from ..extensions import db
from ..models import AuditEvent, utcnow

# what an action is called in the trail (and the filters of the audit page)
ACTIONS = (
    "sign_in", "sign_in_failed", "lockout", "sign_out", "enroll", "password_change",
    "search", "view_person", "view_login_log", "view_audit", "forbidden",
    "disable_user", "enable_user", "disable_account", "enable_account",
    "end_session", "end_sessions", "delete_account", "export_account",
    "operator_add", "operator_disable", "operator_reset",
)
_SECRET_NAMES = ("password", "totp", "secret", "session_key", "token", "code")
PAGE = 50


def _json(value: dict[str, Any] | None) -> str | None:
    if not value:
        return None
    leaked = [k for k in value if any(name in k.lower() for name in _SECRET_NAMES)]
    if leaked:
        raise ValueError(f"the audit trail never holds secrets: {leaked}")
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def record(operator: str, action: str, *, address: str | None = None,
           target: str | None = None, reason: str | None = None,
           before: dict[str, Any] | None = None, after: dict[str, Any] | None = None,
           detail: dict[str, Any] | None = None, commit: bool = True) -> AuditEvent:
    """Add one row to the trail (committed unless `commit` is false: then it goes with the
    caller's transaction)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    event = AuditEvent(at=utcnow(), operator=operator[:64], client_address=address,
                       action=action, target=target[:64] if target else None,
                       reason=reason[:255] if reason else None,
                       before=_json(before), after=_json(after), detail=_json(detail))
    db.session.add(event)
    if commit:
        db.session.commit()
    return event


@dataclass(frozen=True)
class Filters:
    """The audit page's and ``flask audit show``'s filters (None: any)."""

    operator: str | None = None
    action: str | None = None
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def search(filters: Filters, *, before_id: int | None = None,
           limit: int = PAGE) -> list[AuditEvent]:
    """Rows matching `filters`, newest first; `before_id`: the page after the one that ended
    with that row."""
    query = select(AuditEvent)
    if filters.operator:
        query = query.where(AuditEvent.operator == filters.operator)
    if filters.action:
        query = query.where(AuditEvent.action == filters.action)
    if filters.target:
        query = query.where(AuditEvent.target == filters.target)
    if filters.since:
        query = query.where(AuditEvent.at >= filters.since)
    if filters.until:
        query = query.where(AuditEvent.at < filters.until)
    if before_id:
        query = query.where(AuditEvent.id < before_id)
    return list(db.session.execute(query.order_by(AuditEvent.id.desc()).limit(limit)).scalars())


def prune(days: int) -> int:
    """Delete the rows older than `days` days; returns how many (committed)."""
    cutoff = utcnow() - timedelta(days=days)
    deleted = db.session.execute(delete(AuditEvent).where(AuditEvent.at < cutoff)
                                 .execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    return deleted or 0

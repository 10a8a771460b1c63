"""Blueprint `admin`: the support console at ``/admin/`` (issue 24), server-rendered HTML.

HTTP only: who is signed in (Flask's signed session cookie, ``SECRET_KEY``; idle
``ADMIN_IDLE_TIMEOUT``, absolute ``ADMIN_ABSOLUTE_TIMEOUT``; ended by an operator's disable or
reset through ``session_version``), the CSRF token of every form (Flask-WTF), each view's
right (`services.operators.may`: beyond it, 403 ``forbidden``, audited), a fresh TOTP code
for destructive actions, and the per-address slowing of failed sign-ins
(``ADMIN_SIGNIN_RATE_LIMIT``). What is read and done, and its audit, is
`services.console`, `services.operators` and `services.audit`.

A plain Flask blueprint (not flask-smorest's): the console stays out of the OpenAPI
document. Registered only while ``ADMIN_CONSOLE`` is on. Failures answer an HTML page with the
problem's code, or problem+json when the request prefers JSON.
"""

from __future__ import annotations

import functools
import json
import math
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import segno
from flask import (Blueprint, Response, current_app, flash, g, redirect, render_template,
                   request, session, url_for)
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError

from ..errors import PROBLEMS, Problem, localized_detail, problem_response
from ..extensions import csrf, db
from ..i18n import CHINESE, CONTENT_LANGUAGE, DEFAULT_LANGUAGE, current_language
from ..models import Operator
from ..services import audit, console, operators, programs
from ..services.console import Actor
from ..state import state
from .schemas import ExportSchema

blp = Blueprint("admin", __name__, url_prefix="/admin", static_folder="../static/admin",
                static_url_path="/static")

OPEN = {"admin.sign_in", "admin.static", "admin.language"}
STAGES = {"enroll": "admin.enroll", "password": "admin.password"}
OUTCOMES = ("new", "returning", "invalid_code", "code_used", "user_disabled", "user_blocked",
            "rate_limited", "wechat_unavailable", "wechat_timeout", "wechat_busy")


# --- answers ---------------------------------------------------------------------------------

def _wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json",
                                                "application/problem+json"])
    return best in ("application/json", "application/problem+json")


def refuse(code: str, detail: str | None = None, headers: dict[str, str] | None = None):
    """The problem `code`: an HTML page naming it, or problem+json for a JSON request."""
    if _wants_json():
        return problem_response(code, detail, headers=headers)
    g.problem_code = code
    kind = PROBLEMS[code]
    page = render_template("admin/error.html", code=code, title=str(kind.title),
                           detail=localized_detail(kind, detail), status=kind.status)
    return Response(page, status=kind.status, headers=headers or {},
                    mimetype="text/html")


def _actor() -> Actor:
    return Actor(g.operator.name, request.remote_addr)


@blp.errorhandler(Problem)
def _problem(exc: Problem):
    return refuse(exc.kind.code, exc.detail, exc.headers)


# --- the session -----------------------------------------------------------------------------

def _now() -> float:
    return time.time()


def _start_session(operator: Operator) -> None:
    lang = session.get("lang")
    session.clear()  # a new session: nothing of before (fixation)
    now = _now()
    session.update(op=operator.id, ver=operator.session_version, at=now, seen=now)
    if lang:
        session["lang"] = lang
    _set_stage(operator)


def _set_stage(operator: Operator) -> None:
    if operator.enrolled_at is None:
        session["stage"] = "enroll"
    elif operator.must_change_password:
        session["stage"] = "password"
    else:
        session.pop("stage", None)


def _signed_in() -> Operator | None:
    """The operator of this session, or None (never signed in, timed out, ended)."""
    op_id = session.get("op")
    if op_id is None:
        return None
    cfg = current_app.config
    now = _now()
    if (now - session.get("at", 0) > cfg["ADMIN_ABSOLUTE_TIMEOUT"]
            or now - session.get("seen", 0) > cfg["ADMIN_IDLE_TIMEOUT"]):
        return None
    operator = db.session.get(Operator, op_id)
    if (operator is None or operator.disabled_at is not None
            or operator.session_version != session.get("ver")):
        return None
    session["seen"] = now
    return operator


@blp.before_request
def _before():
    if request.method == "POST":
        try:
            csrf.protect()
        except CSRFError:
            return refuse("csrf_invalid")
    if request.endpoint in OPEN:
        return None
    operator = _signed_in()
    if operator is None:
        had = "op" in session
        for key in ("op", "ver", "at", "seen", "stage"):
            session.pop(key, None)
        if _wants_json():
            return refuse("console_sign_in_required")
        if had:
            flash(_("Your session has ended: sign in again."), "info")
        return redirect(url_for("admin.sign_in", next=request.full_path
                                if request.method == "GET" else None))
    g.operator = operator
    stage = session.get("stage")
    if stage and request.endpoint not in (STAGES[stage], "admin.sign_out"):
        return redirect(url_for(STAGES[stage]))
    return None


@blp.after_request
def _headers(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'")
    if "Content-Language" not in response.headers:
        response.headers["Content-Language"] = CONTENT_LANGUAGE[current_language()]
    return response


@blp.context_processor
def _context():
    operator = g.get("operator")
    return {"lang": current_language(), "operator": operator,
            "can": lambda right: bool(operator) and operators.may(operator.role, right),
            "when": _when}


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def needs(right: str):
    """Decorate a view: the operator's role must hold `right`; else 403 ``forbidden``,
    audited ``forbidden``."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            operator = g.operator
            if not operators.may(operator.role, right):
                audit.record(operator.name, "forbidden", address=request.remote_addr,
                             detail={"right": right, "role": operator.role,
                                     "request": f"{request.method} {request.path}"})
                return refuse("forbidden")
            return view(*args, **kwargs)

        return wrapper

    return decorator


def _code_guessing() -> bool:
    """Whether this address has used up ``ADMIN_SIGNIN_RATE_LIMIT``: then no code is even
    checked (wrong codes at enrollment and for destructive actions count there too, so a
    stolen session cannot try the million codes)."""
    window = _signin_limit().exhausted(request.remote_addr or "-")
    if window is not None:
        flash(_("Too many failed sign-ins from this address: try again in %(minutes)s minutes.",
                minutes=max(1, math.ceil((window.reset_at - time.time()) / 60))), "error")
        return True
    return False


def _wrong_code() -> None:
    _signin_limit().hit(request.remote_addr or "-", request.headers.get("User-Agent"))


def _fresh_code() -> bool:
    """The form's ``totp`` field is a fresh code of the operator's (destructive actions)."""
    if _code_guessing():
        return False
    if operators.accept_code(g.operator, request.form.get("totp", "")):
        return True
    _wrong_code()
    flash(_("That code is wrong or was used already: wait for the next code of your "
            "authenticator app and try again."), "error")
    return False


def _safe_next(target: str | None) -> str:
    parts = urlsplit(target or "")
    if target and not parts.scheme and not parts.netloc and parts.path.startswith("/admin/"):
        return target
    return url_for("admin.search")


# --- signing in ------------------------------------------------------------------------------

@blp.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    limit = _signin_limit()
    address = request.remote_addr or "-"
    if request.method == "GET":
        return render_template("admin/sign_in.html", next=request.args.get("next"))
    window = limit.exhausted(address)
    if window is not None:
        return _slowed(window)
    name = request.form.get("name", "").strip()[:64]
    try:
        operator = operators.sign_in(name, request.form.get("password", ""),
                                     request.form.get("totp", ""), address=request.remote_addr)
    except operators.SignInFailed:
        verdict = limit.hit(address, request.headers.get("User-Agent"))
        if not verdict.allowed:
            return _slowed(verdict.window)
        flash(_("Sign-in failed: the name, password or code is wrong. After 5 failures an "
                "operator is locked for 15 minutes."), "error")
        return render_template("admin/sign_in.html", name=name,
                               next=request.form.get("next")), 401
    except operators.OperatorLocked as locked:
        minutes = max(1, math.ceil((locked.until - datetime.now(UTC)).total_seconds() / 60))
        flash(_("This operator is locked after too many failed sign-ins: try again in "
                "%(minutes)s minutes.", minutes=minutes), "error")
        return render_template("admin/sign_in.html", name=name), 403
    except operators.OperatorDisabled:
        flash(_("This operator is disabled: ask an administrator."), "error")
        return render_template("admin/sign_in.html", name=name), 403
    _start_session(operator)
    if session.get("stage"):
        return redirect(url_for(STAGES[session["stage"]]))
    return redirect(_safe_next(request.form.get("next")))


def _signin_limit():
    return state().admin_signin_rate_limit


def _slowed(window):
    seconds = max(1, math.ceil(window.reset_at - time.time()))
    flash(_("Too many failed sign-ins from this address: try again in %(minutes)s minutes.",
            minutes=max(1, math.ceil(seconds / 60))), "error")
    return Response(render_template("admin/sign_in.html"), status=429,
                    headers={"Retry-After": str(seconds)}, mimetype="text/html")


@blp.route("/sign-out", methods=["POST"])
def sign_out():
    audit.record(g.operator.name, "sign_out", address=request.remote_addr,
                 target=f"operator:{g.operator.name}")
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
    flash(_("Signed out."), "info")
    return redirect(url_for("admin.sign_in"))


@blp.route("/enroll", methods=["GET", "POST"])
def enroll():
    operator = g.operator
    if operator.enrolled_at is not None:
        return redirect(url_for("admin.search"))
    uri = operators.provisioning_uri(operator)
    if request.method == "POST" and not _code_guessing():
        if operators.enroll(operator, request.form.get("totp", ""),
                            address=request.remote_addr):
            _set_stage(operator)
            return redirect(url_for(STAGES.get(session.get("stage"), "admin.search")))
        _wrong_code()
        flash(_("That code is wrong: scan the QR code again and enter the code your app "
                "shows now."), "error")
    qr = segno.make(uri, error="m").svg_inline(scale=5, dark="#111", light="#fff")
    return render_template("admin/enroll.html", qr=qr, uri=uri,
                           secret=operator.totp_secret)


@blp.route("/password", methods=["GET", "POST"])
def password():
    operator = g.operator
    if request.method == "POST":
        new = request.form.get("password", "")
        if new != request.form.get("again", ""):
            flash(_("The two passwords differ."), "error")
        else:
            try:
                operators.change_password(operator, new, address=request.remote_addr)
            except operators.OperatorError:
                flash(_("Choose a new password of at least %(n)s characters, other than the "
                        "initial one.", n=operators.PASSWORD_MIN), "error")
            else:
                _set_stage(operator)
                flash(_("Password changed."), "info")
                return redirect(url_for("admin.search"))
    return render_template("admin/password.html", minimum=operators.PASSWORD_MIN,
                           forced=operator.must_change_password)


@blp.route("/language/<lang>")
def language(lang: str):
    """The language switch: kept in the session, for every page of the console."""
    session["lang"] = CHINESE if lang == CHINESE else DEFAULT_LANGUAGE
    return redirect(_safe_next(request.args.get("next")))


# --- search ------------------------------------------------------------------------------------

def _date(text: str | None, *, end: bool = False) -> datetime | None:
    """A YYYY-MM-DD field as the start of that day (UTC); `end`: of the day after."""
    try:
        day = datetime.strptime((text or "").strip(), "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    return day + timedelta(days=1) if end else day


def _int(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isdigit() and len(text) <= 18 else None


def _apps() -> dict[str, str]:
    return {p.appid: p.name for p in programs.configured().values()}


@blp.route("/")
@needs("read")
def search():
    args = request.args
    by = args.get("by") if args.get("by") in console.SEARCH_BY else "openid"
    disabled = {"yes": True, "no": False}.get(args.get("disabled", ""))
    query = console.Search(by=by, q=args.get("q", "")[:128], appid=args.get("app") or None,
                           disabled=disabled, created_from=_date(args.get("from")),
                           created_to=_date(args.get("to"), end=True),
                           before_id=_int(args.get("before")))
    asked = any(args.get(k) for k in ("q", "app", "disabled", "from", "to"))
    found, more = console.search(_actor(), query) if asked else ([], False)
    return render_template("admin/search.html", found=found, more=more, asked=asked,
                           args=args, by=by, apps=_apps(), search_by=console.SEARCH_BY,
                           may_disable=operators.may(g.operator.role, "disable"),
                           mask=operators.mask_phone)


@blp.route("/users/bulk", methods=["POST"])
@needs("disable")
def bulk():
    ids = [i for i in (_int(v) for v in request.form.getlist("ids")) if i is not None][:200]
    reason = request.form.get("reason", "").strip()
    action = request.form.get("action")
    if not ids or not reason or action not in ("disable", "enable"):
        flash(_("Select rows and give a reason."), "error")
    elif action == "disable":
        done = console.disable_users(_actor(), ids, reason)
        flash(_("Disabled %(n)s users.", n=done), "info")
    else:
        done = console.enable_users(_actor(), ids, reason)
        flash(_("Enabled %(n)s users.", n=done), "info")
    return redirect(_safe_next(request.form.get("next")))


# --- a person ----------------------------------------------------------------------------------

@blp.route("/accounts/<int:account_id>")
@needs("read")
def person(account_id: int):
    found = console.person(_actor(), account_id)
    see_phone = operators.may(g.operator.role, "see_phone")
    return render_template("admin/person.html", p=found, apps=_apps(),
                           phone=(lambda n: n) if see_phone else operators.mask_phone,
                           may=lambda right: operators.may(g.operator.role, right))


def _back(account_id: int):
    return redirect(url_for("admin.person", account_id=account_id))


def _reason() -> str | None:
    reason = request.form.get("reason", "").strip()
    if not reason:
        flash(_("Give a reason."), "error")
        return None
    return reason[:255]


@blp.route("/accounts/<int:account_id>/disable", methods=["POST"])
@needs("disable")
def disable_account(account_id: int):
    reason = _reason()
    if reason:
        ended = console.disable_account(_actor(), account_id, reason)
        flash(_("Account disabled; %(n)s sessions ended.", n=len(ended)), "info")
    return _back(account_id)


@blp.route("/accounts/<int:account_id>/enable", methods=["POST"])
@needs("disable")
def enable_account(account_id: int):
    reason = _reason()
    if reason:
        console.enable_account(_actor(), account_id, reason)
        flash(_("Account enabled."), "info")
    return _back(account_id)


@blp.route("/accounts/<int:account_id>/users/<int:user_id>/<any(disable, enable):action>",
           methods=["POST"])
@needs("disable")
def user_action(account_id: int, user_id: int, action: str):
    reason = _reason()
    if reason:
        if action == "disable":
            console.disable_users(_actor(), [user_id], reason)
            flash(_("User disabled."), "info")
        else:
            console.enable_users(_actor(), [user_id], reason)
            flash(_("User enabled."), "info")
    return _back(account_id)


@blp.route("/accounts/<int:account_id>/users/<int:user_id>/sessions/<session_id>/end",
           methods=["POST"])
@needs("end_sessions")
def end_session(account_id: int, user_id: int, session_id: str):
    try:
        console.end_session(_actor(), user_id, session_id[:32])
    except Problem as exc:
        if exc.kind.code != "session_not_found":
            raise
        flash(_("That session had ended already."), "info")
    else:
        flash(_("Session ended."), "info")
    return _back(account_id)


@blp.route("/accounts/<int:account_id>/sessions/end", methods=["POST"])
@needs("end_sessions")
def end_all(account_id: int):
    ended = console.end_all_sessions(_actor(), account_id)
    flash(_("%(n)s sessions ended.", n=len(ended)), "info")
    return _back(account_id)


@blp.route("/accounts/<int:account_id>/delete", methods=["POST"])
@needs("delete")
def delete(account_id: int):
    if request.form.get("confirm", "").strip() != str(account_id):
        flash(_("Type the account id to confirm the deletion."), "error")
        return _back(account_id)
    reason = _reason()
    if not reason or not _fresh_code():
        return _back(account_id)
    erased = console.delete_account(_actor(), account_id, reason)
    flash(_("Account %(id)s deleted (%(n)s app users).", id=account_id, n=len(erased)), "info")
    return redirect(url_for("admin.search"))


@blp.route("/accounts/<int:account_id>/export", methods=["POST"])
@needs("export")
def export(account_id: int):
    if not _fresh_code():
        return _back(account_id)
    data = ExportSchema().dump(console.export(_actor(), account_id))
    body = json.dumps(data, ensure_ascii=False, indent=2)
    return Response(body, mimetype="application/json", headers={
        "Content-Disposition": f'attachment; filename="account-{account_id}.json"'})


# --- the login log and the audit trail -------------------------------------------------------

@blp.route("/logins")
@needs("read")
def logins():
    args = request.args
    filters = console.LoginFilters(
        appid=args.get("app") or None, outcome=args.get("outcome") or None,
        address=(args.get("address") or "").strip()[:45] or None,
        since=_date(args.get("from")), until=_date(args.get("to"), end=True),
        before_id=_int(args.get("before")))
    rows, more = console.login_events(_actor(), filters)
    return render_template("admin/logins.html", rows=rows, more=more, args=args, apps=_apps(),
                           outcomes=OUTCOMES)


@blp.route("/audit")
@needs("read_audit")
def audit_trail():
    args = request.args
    filters = audit.Filters(
        operator=(args.get("operator") or "").strip() or None,
        action=args.get("action") if args.get("action") in audit.ACTIONS else None,
        target=(args.get("target") or "").strip() or None,
        since=_date(args.get("from")), until=_date(args.get("to"), end=True))
    rows = audit.search(filters, before_id=_int(args.get("before")), limit=audit.PAGE + 1)
    audit.record(g.operator.name, "view_audit", address=request.remote_addr,
                 detail={k: v for k, v in vars(filters).items() if v is not None})
    return render_template("admin/audit.html", rows=rows[:audit.PAGE],
                           more=len(rows) > audit.PAGE, args=args, actions=audit.ACTIONS)


# --- operators (admin) -------------------------------------------------------------------------

@blp.route("/operators")
@needs("manage_operators")
def operators_page():
    return render_template("admin/operators.html", operators=operators.all_operators(),
                           roles=operators.ROLES, now=datetime.now(UTC))


@blp.route("/operators/add", methods=["POST"])
@needs("manage_operators")
def operator_add():
    if not _fresh_code():
        return redirect(url_for("admin.operators_page"))
    try:
        enrollment = operators.add(request.form.get("name", "").strip(),
                                   request.form.get("role", ""), by=g.operator.name,
                                   address=request.remote_addr)
    except operators.OperatorError as exc:
        flash(str(exc), "error")
        return redirect(url_for("admin.operators_page"))
    return render_template("admin/enrollment.html", enrollment=enrollment)


@blp.route("/operators/<name>/<any(disable, reset):action>", methods=["POST"])
@needs("manage_operators")
def operator_change(name: str, action: str):
    if not _fresh_code():
        return redirect(url_for("admin.operators_page"))
    try:
        if action == "disable":
            operators.disable(name, by=g.operator.name, address=request.remote_addr)
            flash(_("Operator %(name)s disabled.", name=name), "info")
        else:
            enrollment = operators.reset(name, by=g.operator.name,
                                         address=request.remote_addr)
            return render_template("admin/enrollment.html", enrollment=enrollment)
    except operators.OperatorError as exc:
        flash(str(exc), "error")
    return redirect(url_for("admin.operators_page"))

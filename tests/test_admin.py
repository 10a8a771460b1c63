"""The support console (issue 24) through Flask's test client and CLI runner: operators
(``flask operators …``), sign-in with password and TOTP (enrollment, forced password change,
codes accepted once, lockout, per-address slowing), the console session (timeouts, CSRF),
each role against each action (403 ``forbidden``, audited), search, the person page, the
login log, the audit trail (``flask audit show``, ``flask logs prune``), ``ADMIN_CONSOLE=0``.
Mini-program users log in for real through the emulator (`server`); the codes are computed
by pyotp from the otpauth:// URI the CLI printed."""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta

import pyotp
import pytest
import sqlalchemy as sa

from helpers import OTHER_APPID, assert_problem, emulator_post
from wxauth.extensions import db
from wxauth.models import Account, AuditEvent, LoginSession, Operator, User, utcnow

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
NEW_PASSWORD = "correct horse battery staple"


def parse_enrollment(output: str) -> tuple[str, pyotp.TOTP]:
    """(initial password, TOTP) from ``operators add``/``reset``'s output."""
    password = re.search(r"^password\s+(\S+)$", output, re.M).group(1)
    uri = re.search(r"^totp\s+(otpauth://\S+)$", output, re.M).group(1)
    return password, pyotp.parse_uri(uri)


def add_operator(runner, name: str, role: str) -> tuple[str, pyotp.TOTP]:
    result = runner.invoke(args=["operators", "add", name, "--role", role])
    assert result.exit_code == 0, result.output
    return parse_enrollment(result.output)


class Codes:
    """Fresh TOTP codes, each once: of the steps before, at and after now (one step either
    side is accepted), oldest first; waits out the end of a step first, so all three stay
    valid for the next 25 seconds."""

    def __init__(self, totp: pyotp.TOTP):
        if time.time() % 30 > 25:
            time.sleep(30 - time.time() % 30 + 0.1)
        self.totp = totp
        self.step = int(time.time() // 30) - 1

    def __call__(self) -> str:
        code = self.totp.at(self.step * 30)
        self.step += 1
        return code


class Console:
    """A browser-like user of the console: Flask's test client, each form's CSRF token."""

    def __init__(self, client):
        self.client = client
        self.token = None

    def get(self, path: str, **kwargs):
        response = self.client.get(path, **kwargs)
        found = CSRF.search(response.get_data(as_text=True))
        if found:
            self.token = found.group(1)
        return response

    def post(self, path: str, data: dict | None = None, *, csrf: bool = True, **kwargs):
        data = dict(data or {})
        if csrf:
            data.setdefault("csrf_token", self.token)
        return self.client.post(path, data=data, **kwargs)

    def sign_in(self, name: str, password: str, code: str = ""):
        self.get("/admin/sign-in")
        response = self.post("/admin/sign-in", {"name": name, "password": password,
                                                "totp": code})
        return response


def enrolled(app, runner, name: str, role: str) -> tuple[Console, Codes, str]:
    """A signed-in operator of `role`, through the first sign-in (enroll, new password); the
    console, the codes left (two), the password."""
    password, totp = add_operator(runner, name, role)
    console = Console(app.test_client())
    codes = Codes(totp)
    response = console.sign_in(name, password)
    assert response.status_code == 302 and response.location.endswith("/admin/enroll")
    console.get("/admin/enroll")
    assert console.post("/admin/enroll", {"totp": codes()}).location.endswith("/admin/password")
    console.get("/admin/password")
    done = console.post("/admin/password", {"password": NEW_PASSWORD, "again": NEW_PASSWORD})
    assert done.status_code == 302 and done.location.endswith("/admin/"), done.get_data()
    return console, codes, NEW_PASSWORD


def audit_rows(app, *where) -> list[AuditEvent]:
    with app.app_context():
        found = list(db.session.execute(sa.select(AuditEvent).where(*where)
                                        .order_by(AuditEvent.id)).scalars())
        db.session.expunge_all()
        return found


def account_of(app, openid: str) -> int:
    with app.app_context():
        return db.session.execute(sa.select(User.account_id).where(User.openid == openid)
                                  ).scalar_one()


def text(response) -> str:
    return response.get_data(as_text=True)


# --- operators on the command line -----------------------------------------------------------

def test_operators_add_list_disable_reset_and_audit_show(app, runner):
    result = runner.invoke(args=["operators", "add", "li.na", "--role", "support"])
    assert result.exit_code == 0, result.output
    password, totp = parse_enrollment(result.output)
    assert len(password) >= 16 and totp.secret and "issuer=wxauth" in result.output
    with app.app_context():
        stored = db.session.execute(sa.select(Operator)).scalar_one()
        assert stored.password_hash.startswith("$argon2id$") and password not in stored.password_hash
        raw = db.session.execute(sa.text("SELECT totp_secret FROM operators")).scalar_one()
        assert totp.secret not in raw  # encrypted at rest
    for args, message in ((["operators", "add", "li.na", "--role", "admin"], "exists already"),
                          (["operators", "add", "bad name", "--role", "admin"], "use 1 to 64"),
                          (["operators", "disable", "nobody"], "no operator")):
        failed = runner.invoke(args=args)
        assert failed.exit_code != 0 and message in failed.output
    assert runner.invoke(args=["operators", "add", "x", "--role", "root"]).exit_code != 0

    listed = runner.invoke(args=["operators", "list"]).output
    assert "li.na" in listed and "support" in listed and "not enrolled" in listed
    assert password not in listed and totp.secret not in listed

    assert runner.invoke(args=["operators", "disable", "li.na"]).exit_code == 0
    assert "disabled" in runner.invoke(args=["operators", "list"]).output
    reset = runner.invoke(args=["operators", "reset", "li.na"])
    new_password, new_totp = parse_enrollment(reset.output)
    assert new_password != password and new_totp.secret != totp.secret
    assert "not enrolled" in runner.invoke(args=["operators", "list"]).output

    shown = runner.invoke(args=["audit", "show"]).output
    for action in ("operator_add", "operator_disable", "operator_reset"):
        assert action in shown
    assert "operator:li.na" in shown and "cli:" in shown
    assert password not in shown and new_password not in shown and totp.secret not in shown
    only = runner.invoke(args=["audit", "show", "--action", "operator_reset"]).output
    assert "operator_reset" in only and "operator_add" not in only


def test_the_support_commands_are_audited_too(app, runner, server):
    server.login("o-cli-audit")
    account_id = account_of(app, "o-cli-audit")
    for args in (["users", "disable", "o-cli-audit", "--reason", "phone call"],
                 ["users", "enable", "o-cli-audit"], ["users", "kick", "o-cli-audit"],
                 ["accounts", "disable", str(account_id), "--reason", "fraud"],
                 ["accounts", "enable", str(account_id)],
                 ["accounts", "delete", str(account_id), "--yes"]):
        result = runner.invoke(args=args)
        assert result.exit_code == 0, result.output
    rows = audit_rows(app)
    assert [e.action for e in rows] == ["disable_user", "enable_user", "end_sessions",
                                        "disable_account", "enable_account", "delete_account"]
    assert all(e.operator.startswith("cli:") for e in rows)
    assert rows[0].reason == "phone call" and rows[-1].target == f"account:{account_id}"


def test_reencrypt_moves_the_totp_secrets_and_a_lost_key_opens_no_sign_in(app, app_config,
                                                                           runner):
    from cryptography.fernet import Fernet

    from wxauth import create_app

    console, codes, password = enrolled(app, runner, "keys", "viewer")
    new_key = Fernet.generate_key().decode()
    rotated = create_app({**app_config, "SESSION_KEY_ENCRYPTION_KEY":
                          f"{new_key},{app_config['SESSION_KEY_ENCRYPTION_KEY']}"})
    result = rotated.test_cli_runner().invoke(args=["users", "reencrypt"])
    assert "re-encrypted 1 operators' TOTP secrets" in result.output, result.output
    # with only the new key the secret still opens: a code signs in
    only_new = create_app({**app_config, "SESSION_KEY_ENCRYPTION_KEY": new_key})
    assert Console(only_new.test_client()).sign_in("keys", password, codes()
                                                    ).location.endswith("/admin/")
    # with a key that opens nothing, the secret reads "": every code is refused (401, not a
    # 500: pyotp refuses an empty secret), until `operators reset`
    lost = create_app({**app_config, "SESSION_KEY_ENCRYPTION_KEY": Fernet.generate_key().decode()})
    assert Console(lost.test_client()).sign_in("keys", password, codes()).status_code == 401


# --- signing in --------------------------------------------------------------------------------

def test_first_sign_in_shows_the_qr_code_then_forces_a_new_password(app, runner):
    password, totp = add_operator(runner, "wang", "viewer")
    console = Console(app.test_client())
    assert console.get("/admin/").location.startswith("/admin/sign-in")
    response = console.sign_in("wang", password)
    assert response.location.endswith("/admin/enroll")
    assert console.get("/admin/").location.endswith("/admin/enroll")  # nothing else first
    page = text(console.get("/admin/enroll"))
    assert "<svg" in page and totp.secret in page and "http" not in page.split("<main>")[1]
    codes = Codes(totp)
    assert console.post("/admin/enroll", {"totp": "000000"}).status_code == 200
    assert console.post("/admin/enroll", {"totp": codes()}).location.endswith("/admin/password")
    assert console.get("/admin/").location.endswith("/admin/password")
    console.get("/admin/password")
    short = console.post("/admin/password", {"password": "short", "again": "short"})
    assert short.status_code == 200 and "at least" in text(short)
    same = console.post("/admin/password", {"password": password, "again": password})
    assert same.status_code == 200
    assert console.post("/admin/password", {"password": NEW_PASSWORD, "again": NEW_PASSWORD}
                        ).location.endswith("/admin/")
    assert console.get("/admin/").status_code == 200

    # the next sign-in needs the new password and a code; a code is accepted once
    other = Console(app.test_client())
    assert other.sign_in("wang", password, codes()).status_code == 401  # the initial password
    code = codes()
    assert other.sign_in("wang", NEW_PASSWORD, code).location.endswith("/admin/")
    again = Console(app.test_client())
    assert again.sign_in("wang", NEW_PASSWORD, code).status_code == 401  # replayed
    actions = [e.action for e in audit_rows(app, AuditEvent.target == "operator:wang")]
    assert actions[:5] == ["operator_add", "sign_in", "enroll", "password_change",
                           "sign_in_failed"]
    assert actions[-2:] == ["sign_in", "sign_in_failed"]


def test_five_failures_lock_and_nobody_learns_which_names_exist(app, runner):
    console, codes, password = enrolled(app, runner, "zhao", "viewer")
    stranger = Console(app.test_client())
    unknown = stranger.sign_in("nobody", "whatever", "123456")
    wrong = stranger.sign_in("zhao", "whatever", "123456")
    assert unknown.status_code == wrong.status_code == 401
    message = "the name, password or code is wrong"
    assert message in text(unknown) and message in text(wrong)
    for _ in range(4):  # 5 failures with the wrong one before: the right password, wrong codes
        assert stranger.sign_in("zhao", password, "000000").status_code == 401
    locked = stranger.sign_in("zhao", password, codes())
    assert locked.status_code == 403 and "locked" in text(locked)
    # the same answer as ever for a wrong password while locked: the lock is told only to
    # someone who knows the password and a code
    assert stranger.sign_in("zhao", "whatever", "123456").status_code == 401
    rows = audit_rows(app, AuditEvent.target == "operator:zhao")
    assert [e.action for e in rows].count("lockout") == 1
    assert rows[-1].action == "sign_in_failed"
    assert json.loads(rows[-1].detail)["while_locked"] is True
    assert audit_rows(app, AuditEvent.operator == "nobody")[0].action == "sign_in_failed"
    assert console.get("/admin/").status_code == 200  # a session signed in before goes on
    assert "locked" in runner.invoke(args=["operators", "list"]).output
    runner.invoke(args=["operators", "reset", "zhao"])  # unlocks (and ends that session)
    assert console.get("/admin/").location.startswith("/admin/sign-in")


@pytest.fixture
def app_config(app_config, request):
    """ADMIN_SIGNIN_RATE_LIMIT: a test's own ``signin_limit`` attribute, else out of the way."""
    app_config["ADMIN_SIGNIN_RATE_LIMIT"] = getattr(request.function, "signin_limit",
                                                    "1000 per minute")
    return app_config


def test_an_address_failing_too_often_is_slowed_for_every_name(app, runner):
    console = Console(app.test_client())
    for name in ("a", "b", "c"):  # 3 failures allowed, of any names
        assert console.sign_in(name, "wrong").status_code == 401
    response = console.sign_in("d", "wrong")
    assert response.status_code == 429 and int(response.headers["Retry-After"]) > 0
    password, _ = add_operator(runner, "qian", "viewer")
    refused = console.sign_in("qian", password)  # right password, still refused
    assert refused.status_code == 429


test_an_address_failing_too_often_is_slowed_for_every_name.signin_limit = "3 per minute"


def test_wrong_codes_after_sign_in_count_too(app, runner, server):
    """A stolen session cannot try the million codes of a destructive action or of the
    enrollment: their wrong codes count in ADMIN_SIGNIN_RATE_LIMIT like failed sign-ins."""
    server.login("o-guess")
    account_id = account_of(app, "o-guess")
    console, codes, _ = enrolled(app, runner, "guess", "admin")
    console.get(f"/admin/accounts/{account_id}")
    for code in ("000000", "111111", "222222", codes()):  # 3 allowed; then even the right one
        exported = console.post(f"/admin/accounts/{account_id}/export", {"totp": code})
        assert exported.status_code == 302
    assert "Too many failed sign-ins" in text(console.get(f"/admin/accounts/{account_id}"))
    assert not audit_rows(app, AuditEvent.action == "export_account")


test_wrong_codes_after_sign_in_count_too.signin_limit = "3 per minute"


def test_disabled_operator_is_signed_out_and_told_only_with_the_right_credentials(app, runner):
    console, codes, password = enrolled(app, runner, "sun", "support")
    assert runner.invoke(args=["operators", "disable", "sun"]).exit_code == 0
    assert console.get("/admin/").location.startswith("/admin/sign-in")
    refused = Console(app.test_client()).sign_in("sun", password, codes())
    assert refused.status_code == 403 and "disabled" in text(refused)


def test_idle_and_absolute_timeouts_end_the_console_session(app, runner):
    console, _, _ = enrolled(app, runner, "zhou", "viewer")
    with console.client.session_transaction("/admin/") as session:
        session["seen"] -= 31 * 60
    assert console.get("/admin/").location.startswith("/admin/sign-in")
    console, _, _ = enrolled(app, runner, "wu", "viewer")
    for _ in range(2):
        with console.client.session_transaction("/admin/") as session:  # active, but 12 h on
            session["at"] -= 6 * 3600 + 1
            session["seen"] = time.time()
        response = console.get("/admin/")
    assert response.location.startswith("/admin/sign-in")


def test_the_cookie_and_the_headers(app, runner):
    console = Console(app.test_client())
    response = console.get("/admin/sign-in")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin" in cookie
    assert response.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert "http" not in text(response).split("<body>")[1]  # no outside assets
    assert console.client.get("/admin/static/console.css").status_code == 200


def test_a_form_without_its_csrf_token_is_refused(app, runner, server):
    server.login("o-csrf")
    account_id = account_of(app, "o-csrf")
    console, _, _ = enrolled(app, runner, "zheng", "support")
    refused = console.post(f"/admin/accounts/{account_id}/disable", {"reason": "spam"},
                           csrf=False)
    assert refused.status_code == 400 and 'id="problem-code">csrf_invalid<' in text(refused)
    as_json = console.post(f"/admin/accounts/{account_id}/disable", {"reason": "spam",
                           "csrf_token": "forged"}, headers={"Accept": "application/json"})
    assert_problem(_Json(as_json), 400, "csrf_invalid")
    signin = Console(app.test_client()).post("/admin/sign-in", {"name": "zheng"}, csrf=False)
    assert signin.status_code == 400
    with app.app_context():
        assert db.session.get(Account, account_id).disabled_at is None


class _Json:
    """A Flask test response as `assert_problem` reads a requests one."""

    def __init__(self, response):
        self.status_code = response.status_code
        self.headers = response.headers
        self.text = response.get_data(as_text=True)

    def json(self):
        return json.loads(self.text)


# --- roles ---------------------------------------------------------------------------------

ROLE_CASES = ["viewer", "support", "admin"]


@pytest.mark.parametrize("role", ROLE_CASES)
def test_each_role_against_each_action(app, runner, server, role):
    server.login("o-role-a")
    account_id = account_of(app, "o-role-a")
    with app.app_context():
        user = db.session.execute(sa.select(User).where(User.openid == "o-role-a")).scalar_one()
        user_id = user.id
        session_id = db.session.execute(sa.select(LoginSession.id).where(
            LoginSession.user_id == user_id)).scalar_one()
    console, codes, _ = enrolled(app, runner, f"op-{role}", role)
    rank = ROLE_CASES.index(role)
    base = f"/admin/accounts/{account_id}"
    reads = [("/admin/?by=openid&q=o-role-a", 0), (base, 0), ("/admin/logins", 0),
             ("/admin/audit", 2), ("/admin/operators", 2)]
    for path, least in reads:
        response = console.get(path)
        assert response.status_code == (200 if rank >= least else 403), (path, role)
    writes = [(f"{base}/users/{user_id}/disable", {"reason": "r"}, 1),
              (f"{base}/users/{user_id}/enable", {"reason": "r"}, 1),
              (f"{base}/disable", {"reason": "r"}, 1),
              (f"{base}/enable", {"reason": "r"}, 1),
              ("/admin/users/bulk", {"ids": str(user_id), "reason": "r", "action": "enable"}, 1),
              (f"{base}/users/{user_id}/sessions/{session_id}/end", {}, 1),
              (f"{base}/sessions/end", {}, 1),
              (f"{base}/export", {"totp": "000000"}, 2),
              ("/admin/operators/add", {"name": "x", "role": "viewer", "totp": "000000"}, 2),
              (f"/admin/operators/op-{role}/disable", {"totp": "000000"}, 2),
              (f"{base}/delete", {"confirm": "0", "reason": "r", "totp": "000000"}, 2)]
    for path, data, least in writes:
        response = console.post(path, data)
        if rank >= least:
            assert response.status_code == 302, (path, role, text(response))
        else:
            assert response.status_code == 403, (path, role)
            assert 'id="problem-code">forbidden<' in text(response)
    refused = audit_rows(app, AuditEvent.action == "forbidden")
    expected = sum(rank < least for _, least in reads) + sum(
        rank < least for _, _, least in writes)
    assert len(refused) == expected
    if refused:
        assert {e.operator for e in refused} == {f"op-{role}"}
        as_json = console.client.get("/admin/audit", headers={"Accept": "application/json"})
        assert_problem(_Json(as_json), 403, "forbidden")


def test_phone_numbers_are_masked_for_a_viewer(app, runner, server):
    phone_code = emulator_post(server.emulator.url, "/dev/phone-code",
                               {"openid": "o-phone", "phone": "13812341234"})["code"]
    code = server.emulator.mint("o-phone")["code"]
    assert server.post("/auth/login", json={"code": code, "phone_code": phone_code}
                       ).status_code == 200
    account_id = account_of(app, "o-phone")
    viewer, _, _ = enrolled(app, runner, "v", "viewer")
    support, _, _ = enrolled(app, runner, "s", "support")
    for console, shown in ((viewer, "138****1234"), (support, "13812341234")):
        page = text(console.get(f"/admin/accounts/{account_id}"))
        assert shown in page
        found = text(console.get("/admin/?by=phone&q=13812341234"))
        assert '<td class="mono">138****1234</td>' in found
        assert '<td class="mono">13812341234</td>' not in found  # (the box keeps what was typed)
    assert "13812341234" not in text(viewer.get(f"/admin/accounts/{account_id}"))


# --- what support does, and its effect on the mini-program ---------------------------------

def test_disable_in_the_console_refuses_the_token_at_its_next_request(app, runner, server):
    tokens = server.login("o-bad")
    account_id = account_of(app, "o-bad")
    console, _, _ = enrolled(app, runner, "help", "support")
    page = console.get(f"/admin/accounts/{account_id}")
    assert "o-bad" in text(page)
    assert console.post(f"/admin/accounts/{account_id}/disable", {"reason": ""}
                        ).status_code == 302  # no reason: nothing done
    assert server.get("/profile", token=tokens["access_token"]).status_code == 200
    done = console.post(f"/admin/accounts/{account_id}/disable", {"reason": "fraud report 42"})
    assert done.status_code == 302
    assert_problem(server.get("/profile", token=tokens["access_token"]), 403, "user_disabled")
    assert_problem(server.post("/auth/refresh", token=tokens["refresh_token"]), 403,
                   "user_disabled")
    page = text(console.get(f"/admin/accounts/{account_id}"))
    assert "fraud report 42" in page and "help" in page
    assert console.post(f"/admin/accounts/{account_id}/enable", {"reason": "appeal"}
                        ).status_code == 302
    assert server.login("o-bad")["access_token"]
    (disabled,) = audit_rows(app, AuditEvent.action == "disable_account")
    assert (disabled.operator, disabled.target, disabled.reason) == (
        "help", f"account:{account_id}", "fraud report 42")
    assert json.loads(disabled.before)["disabled"] is False
    assert json.loads(disabled.after)["disabled"] is True
    assert json.loads(disabled.after)["sessions_ended"] == 1
    assert disabled.client_address == "127.0.0.1"
    assert audit_rows(app, AuditEvent.action == "enable_account")[0].reason == "appeal"
    views = audit_rows(app, AuditEvent.action == "view_person")
    assert {e.target for e in views} == {f"account:{account_id}"}


def test_the_person_page_and_ending_sessions(app, runner, server):
    first = server.login("o-two-phones")
    second = server.login("o-two-phones")
    account_id = account_of(app, "o-two-phones")
    with app.app_context():
        user = db.session.execute(sa.select(User).where(User.openid == "o-two-phones")
                                  ).scalar_one()
        session_key = user.session_key
        live = db.session.execute(sa.select(LoginSession.id).where(
            LoginSession.user_id == user.id).order_by(LoginSession.created_at)).scalars().all()
    console, _, _ = enrolled(app, runner, "kang", "support")
    page = text(console.get(f"/admin/accounts/{account_id}"))
    assert all(s in page for s in live) and "o-two-phones" in page
    for secret in (session_key, first["access_token"], first["refresh_token"],
                   second["access_token"]):
        assert secret not in page
    assert console.post(f"/admin/accounts/{account_id}/users/{user.id}/sessions/{live[0]}/end"
                        ).status_code == 302
    assert_problem(server.get("/profile", token=first["access_token"]), 401, "token_revoked")
    assert server.get("/profile", token=second["access_token"]).status_code == 200
    again = console.post(f"/admin/accounts/{account_id}/users/{user.id}/sessions/{live[0]}/end")
    assert again.status_code == 302  # already ended: said so, nothing else
    assert console.post(f"/admin/accounts/{account_id}/sessions/end").status_code == 302
    assert_problem(server.get("/profile", token=second["access_token"]), 401, "token_revoked")
    actions = [e.action for e in audit_rows(app, AuditEvent.operator == "kang")]
    assert actions.count("end_session") == 1 and actions.count("end_sessions") == 1


@pytest.mark.databases  # (the queries of search, logs and deletion on each)
def test_delete_needs_the_typed_id_and_a_fresh_code_and_export_a_code(app, runner, server):
    tokens = server.login("o-leaving")
    account_id = account_of(app, "o-leaving")
    console, codes, _ = enrolled(app, runner, "boss", "admin")
    console.get(f"/admin/accounts/{account_id}")
    base = f"/admin/accounts/{account_id}"
    assert console.post(f"{base}/export", {"totp": "000000"}).status_code == 302
    export = console.post(f"{base}/export", {"totp": codes()})
    assert export.status_code == 200 and "attachment" in export.headers["Content-Disposition"]
    data = json.loads(text(export))
    assert data["account"]["id"] == account_id and data["users"][0]["openid"] == "o-leaving"
    assert "session_key" not in text(export) and tokens["access_token"] not in text(export)
    for form in ({"confirm": "1" + str(account_id), "reason": "asked", "totp": "000000"},
                 {"confirm": str(account_id), "reason": "asked", "totp": "000000"}):
        assert console.post(f"{base}/delete", form).status_code == 302
        assert server.get("/profile", token=tokens["access_token"]).status_code == 200
    deleted = console.post(f"{base}/delete", {"confirm": str(account_id),
                                              "reason": "user asked by phone",
                                              "totp": codes()})
    assert deleted.status_code == 302 and deleted.location.endswith("/admin/")
    assert_problem(server.get("/profile", token=tokens["access_token"]), 401, "user_not_found")
    assert console.get(base).status_code == 404
    (row,) = audit_rows(app, AuditEvent.action == "delete_account")
    assert row.reason == "user asked by phone" and "o-leaving" not in (row.before + row.after)
    assert len(audit_rows(app, AuditEvent.action == "export_account")) == 1


def test_an_admin_adds_and_disables_operators_in_the_console(app, runner):
    console, codes, _ = enrolled(app, runner, "chief", "admin")
    console.get("/admin/operators")
    refused = console.post("/admin/operators/add", {"name": "new.one", "role": "support",
                                                    "totp": "000000"})
    assert refused.status_code == 302 and "new.one" not in runner.invoke(
        args=["operators", "list"]).output
    added = console.post("/admin/operators/add", {"name": "new.one", "role": "support",
                                                  "totp": codes()})
    page = text(added)
    assert added.status_code == 200 and "otpauth://totp/" in page
    password = re.search(r'Initial password: <span class="mono">([^<]+)<', page).group(1)
    newcomer = Console(app.test_client())
    assert newcomer.sign_in("new.one", password).location.endswith("/admin/enroll")
    console.get("/admin/operators")
    assert console.post("/admin/operators/new.one/disable", {"totp": codes()}
                        ).location.endswith("/admin/operators")
    assert newcomer.get("/admin/enroll").location.startswith("/admin/sign-in")
    rows = audit_rows(app, AuditEvent.target == "operator:new.one")
    assert [(e.operator, e.action) for e in rows] == [
        ("chief", "operator_add"), ("new.one", "sign_in"), ("chief", "operator_disable")]
    assert password not in " ".join(str(e.after) + str(e.detail) for e in rows)


# --- search, bulk, login log, audit --------------------------------------------------------

@pytest.mark.databases  # (the queries of search, logs and deletion on each)
def test_search_filters_pagination_and_bulk(app, runner, server):
    server.login("o-find-me", unionid="u-find-me")
    with app.app_context():
        account = db.session.execute(sa.select(Account).join(User).where(
            User.openid == "o-find-me")).scalar_one()
        user = db.session.execute(sa.select(User).where(User.openid == "o-find-me")
                                  ).scalar_one()
        user.nickname = "小明"
        for i in range(55):  # more than a page of 小红…
            extra = Account()
            db.session.add(extra)
            db.session.flush()
            db.session.add(User(account_id=extra.id, appid=user.appid, openid=f"o-bulk-{i}",
                                session_key="", nickname=f"小红{i:02d}"))
        db.session.commit()
        ids = {"user_id": str(user.id), "account_id": str(account.id)}
    console, _, _ = enrolled(app, runner, "finder", "support")
    for by, q in (("openid", "o-find-me"), ("unionid", "u-find-me"), ("nickname", "小明"),
                  ("user_id", ids["user_id"]), ("account_id", ids["account_id"])):
        page = text(console.get(f"/admin/?by={by}&q={q}"))
        assert "o-find-me" in page and "o-bulk-" not in page, by
    assert "Nobody found" in text(console.get("/admin/?by=openid&q=o-find"))  # exact
    assert "Nobody found" in text(console.get("/admin/?by=user_id&q=abc"))
    first = text(console.get("/admin/?by=nickname&q=小红"))
    assert first.count("o-bulk-") == 50 and "Next page" in first
    before = re.search(r'before=(\d+)">Next page', first).group(1)
    second = text(console.get(f"/admin/?by=nickname&q=小红&before={before}"))
    assert second.count("o-bulk-") == 5 and "Next page" not in second
    assert "o-find-me" in text(console.get("/admin/?by=openid&q=o-find-me&disabled=no"
                                           "&from=2000-01-01"))
    assert "Nobody found" in text(console.get("/admin/?by=openid&q=o-find-me&to=2000-01-01"))
    assert "Nobody found" in text(console.get(f"/admin/?by=openid&q=o-find-me&app={OTHER_APPID}"))

    bulk_ids = re.findall(r'name="ids" value="(\d+)"', second)
    console.get("/admin/?by=nickname&q=小红")
    assert console.post("/admin/users/bulk", {"ids": bulk_ids, "reason": "spam wave",
                                              "action": "disable"}).status_code == 302
    disabled = text(console.get("/admin/?by=nickname&q=小红&disabled=yes"))
    assert disabled.count("o-bulk-") == 5
    assert console.post("/admin/users/bulk", {"ids": bulk_ids, "reason": "false alarm",
                                              "action": "enable"}).status_code == 302
    assert "Nobody found" in text(console.get("/admin/?by=nickname&q=小红&disabled=yes"))
    assert len(audit_rows(app, AuditEvent.action == "disable_user")) == 5
    searches = audit_rows(app, AuditEvent.action == "search")
    assert json.loads(searches[0].detail) == {"by": "openid", "q": "o-find-me"}


@pytest.mark.databases  # (the queries of search, logs and deletion on each)
def test_the_login_log_and_the_audit_pages(app, runner, server):
    server.login("o-logs")
    code = server.emulator.mint("o-logs")["code"]
    server.post("/auth/login", json={"code": code})
    server.post("/auth/login", json={"code": code})  # code_used
    account_id = account_of(app, "o-logs")
    console, _, _ = enrolled(app, runner, "auditor", "admin")
    page = text(console.get("/admin/logins"))
    assert "<td>code_used</td>" in page and f"/admin/accounts/{account_id}" in page
    assert "<td>code_used</td>" not in text(console.get("/admin/logins?outcome=returning"))
    assert "<td>returning</td>" not in text(console.get("/admin/logins?address=10.9.9.9"))
    assert "<td>code_used</td>" not in text(console.get("/admin/logins?to=2000-01-01"))
    console.get(f"/admin/accounts/{account_id}")
    audit_page = text(console.get("/admin/audit"))
    for action in ("sign_in", "enroll", "password_change", "view_login_log", "view_person"):
        assert f'data-action="{action}"' in audit_page
    only = text(console.get("/admin/audit?action=view_person&operator=auditor"))
    assert re.findall(r'data-action="(\w+)"', only) == ["view_person"]
    assert f"account:{account_id}" in text(console.get(f"/admin/audit?target=account:{account_id}"))

    with app.app_context():
        db.session.add(AuditEvent(at=utcnow() - timedelta(days=400), operator="old",
                                  action="search"))
        db.session.commit()
    pruned = runner.invoke(args=["logs", "prune"])
    assert "deleted 1 audit-trail rows older than 365 days" in pruned.output
    assert not audit_rows(app, AuditEvent.operator == "old")


def test_the_console_speaks_chinese_and_switches(app, runner):
    console, _, _ = enrolled(app, runner, "li", "viewer")
    chinese = text(console.get("/admin/", headers={"Accept-Language": "zh-CN,zh;q=0.9"}))
    assert "搜索" in chinese and "登录日志" in chinese and 'lang="zh-Hans"' in chinese
    console.get("/admin/language/en?next=/admin/logins")
    english = text(console.get("/admin/", headers={"Accept-Language": "zh-CN"}))
    assert "Login log" in english and "登录日志" not in english
    signin = text(Console(app.test_client()).get("/admin/sign-in",
                                                  headers={"Accept-Language": "zh"}))
    assert "登录" in signin


# --- off, and the error table -----------------------------------------------------------------

def test_admin_console_0_removes_the_routes(app_config):
    from wxauth import create_app

    app = create_app(dict(app_config, ADMIN_CONSOLE="0"))
    response = app.test_client().get("/admin/sign-in")
    assert_problem(_Json(response), 404, "not_found")
    assert not [r for r in app.url_map.iter_rules() if r.rule.startswith("/admin")]


def test_production_needs_secret_key_only_while_the_console_is_on(app_config):
    from config import ConfigError
    from wxauth import create_app

    production = dict(app_config, TESTING=False)
    with pytest.raises(ConfigError, match="SECRET_KEY is not set"):
        create_app(production)
    with pytest.raises(ConfigError, match="SECRET_KEY is shorter than 32 bytes"):
        create_app(dict(production, SECRET_KEY="short"))
    with pytest.raises(ConfigError, match="ADMIN_CONSOLE='maybe' is not a switch"):
        create_app(dict(production, ADMIN_CONSOLE="maybe"))
    assert create_app(dict(production, ADMIN_CONSOLE="0")).config["SECRET_KEY"] is None
    on = create_app(dict(production, SECRET_KEY="k" * 32))
    assert on.config["SESSION_COOKIE_SECURE"] is True  # HTTPS only in production


def test_a_flask_403_answers_forbidden(app):
    from flask import abort

    app.add_url_rule("/_forbidden", "forbidden_probe", lambda: abort(403))
    assert_problem(_Json(app.test_client().get("/_forbidden")), 403, "forbidden")


def test_the_session_cookie_is_read_only_under_the_console_path(app):
    """The API's requests get Flask's null session (no cookie verified, none can be
    written); /admin and the paths under it (RFC 6265 path-match: not /adminx) the signed
    cookie session."""
    from flask import session

    for path, opened in (("/admin", True), ("/admin/", True), ("/admin/users", True),
                         ("/adminx", False), ("/profile", False), ("/auth/verify", False)):
        with app.test_request_context(path):
            assert app.session_interface.is_null_session(session) is not opened, path
    with app.test_request_context("/auth/login"), pytest.raises(RuntimeError):
        session["op"] = 1  # (a null session refuses writes)

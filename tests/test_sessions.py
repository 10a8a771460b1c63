"""Issue 18 part A over real HTTP, on every database of the matrix: disabling users and
accounts, sessions (one per login), the login log and its retention."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from helpers import APPID, OTHER_APPID, ROOT, assert_problem, migrate, run
from test_accounts import login as app_login
from test_accounts import two_apps  # noqa: F401  (the fixture)
from wxauth.extensions import db
from wxauth.models import LoginEvent, LoginSession, User, utcnow

pytestmark = pytest.mark.databases

WECHAT_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
             "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.49(0x18003137) "
             "NetType/WIFI Language/zh_CN miniProgram/wx1234567890abcdef")


def login(server, openid, user_agent=WECHAT_UA, **headers):
    code = server.emulator.mint(openid)["code"]
    return server.post("/auth/login", json={"code": code},
                       headers={"User-Agent": user_agent, **headers})


def logged_in(server, openid, user_agent=WECHAT_UA, **headers):
    response = login(server, openid, user_agent, **headers)
    assert response.status_code == 200, response.text
    return response.json()


def rows(app, model, *where, order=None):
    with app.app_context():
        query = sa.select(model).where(*where).order_by(order if order is not None else model.id)
        found = list(db.session.execute(query).scalars())
        db.session.expunge_all()
        return found


def user_row(app, openid, appid=APPID) -> User:
    (user,) = rows(app, User, User.openid == openid, User.appid == appid)
    return user


def invoke(runner, *args):
    result = runner.invoke(args=list(args))
    assert result.exit_code == 0, result.output
    return result.output


# --- disable ------------------------------------------------------------------------------

def test_disable_refuses_login_and_every_token_at_once(app, server, runner):
    first = logged_in(server, "o-dis")
    second = logged_in(server, "o-dis")
    events_before = len(rows(app, LoginEvent))
    before = user_row(app, "o-dis")

    out = invoke(runner, "users", "disable", "o-dis", "--reason", "fraud report #12",
                 "--by", "alice")
    assert "2 sessions ended" in out
    user = user_row(app, "o-dis")
    assert (user.disabled_by, user.disabled_reason) == ("alice", "fraud report #12")
    assert user.disabled_at is not None

    for body in (first, second):  # the next request, access and refresh alike
        assert_problem(server.get("/profile", token=body["access_token"]), 403, "user_disabled")
        assert_problem(server.post("/auth/refresh", token=body["refresh_token"]), 403,
                       "user_disabled")
        assert_problem(server.get("/auth/sessions", token=body["access_token"]), 403,
                       "user_disabled")

    refused = login(server, "o-dis")
    body = assert_problem(refused, 403, "user_disabled")
    assert "access_token" not in body and "refresh_token" not in body
    # nothing written but its login-log row
    after = user_row(app, "o-dis")
    assert after.last_login_at == before.last_login_at
    assert len(rows(app, LoginSession, LoginSession.user_id == user.id)) == 2
    events = rows(app, LoginEvent)
    assert len(events) == events_before + 1
    assert (events[-1].outcome, events[-1].user_id) == ("user_disabled", user.id)

    invoke(runner, "users", "enable", "o-dis")
    again = logged_in(server, "o-dis")
    assert server.get("/profile", token=again["access_token"]).status_code == 200
    for body in (first, second):  # old tokens stay dead
        assert_problem(server.get("/profile", token=body["access_token"]), 401, "token_revoked")
        assert_problem(server.post("/auth/refresh", token=body["refresh_token"]), 401,
                       "token_revoked")
    assert user_row(app, "o-dis").disabled_at is None


def test_users_show_says_who_disabled_when_and_why(server, runner):
    logged_in(server, "o-show-dis")
    invoke(runner, "users", "disable", "o-show-dis", "--reason", "chargeback")
    out = invoke(runner, "users", "show", "o-show-dis")
    assert "chargeback" in out and " by " in out


def test_disable_needs_a_reason_and_an_existing_user(runner):
    result = runner.invoke(args=["users", "disable", "o-nobody", "--reason", "x"])
    assert result.exit_code != 0 and "no user" in result.output
    result = runner.invoke(args=["users", "disable", "o-nobody"])
    assert result.exit_code != 0 and "--reason" in result.output


def test_account_disable_covers_every_app_present_and_future(two_apps, runner):
    server, app = two_apps
    shop = app_login(server, APPID, "o-acct-shop", "u-acct-dis")
    account_id = shop["user"]["account_id"]
    games = app_login(server, OTHER_APPID, "o-acct-games", "u-acct-dis")
    assert games["user"]["account_id"] == account_id

    out = invoke(runner, "accounts", "disable", str(account_id), "--reason", "court order")
    assert "2 sessions ended" in out
    for body in (shop, games):
        assert_problem(server.get("/profile", token=body["access_token"]), 403, "user_disabled")
        assert_problem(server.post("/auth/refresh", token=body["refresh_token"]), 403,
                       "user_disabled")
    for appid, openid in ((APPID, "o-acct-shop"), (OTHER_APPID, "o-acct-games")):
        code = server.emulator.mint(openid, appid=appid, unionid="u-acct-dis")["code"]
        assert_problem(server.post("/auth/login", json={"code": code, "appid": appid}), 403,
                       "user_disabled")
    assert "court order" in invoke(runner, "accounts", "show", str(account_id))

    # a third app user of the same person (same unionid, new openid) is refused too and
    # nothing is created for it
    code = server.emulator.mint("o-acct-new", appid=OTHER_APPID, unionid="u-acct-dis")["code"]
    assert_problem(server.post("/auth/login", json={"code": code, "appid": OTHER_APPID}), 403,
                   "user_disabled")
    assert rows(app, User, User.openid == "o-acct-new") == []

    invoke(runner, "accounts", "enable", str(account_id))
    again = app_login(server, APPID, "o-acct-shop", "u-acct-dis")
    assert server.get("/profile", token=again["access_token"]).status_code == 200
    assert_problem(server.get("/profile", token=shop["access_token"]), 401, "token_revoked")


# --- sessions -----------------------------------------------------------------------------

def test_each_login_is_a_session_listed_with_the_current_one_flagged(app, server):
    phone = logged_in(server, "o-sess", WECHAT_UA)
    tablet = logged_in(server, "o-sess", "Mozilla/5.0 (iPad) MicroMessenger/8.0.47")
    other_user = logged_in(server, "o-sess-other")

    response = server.get("/auth/sessions", token=phone["access_token"])
    assert response.status_code == 200, response.text
    listed = response.json()["sessions"]
    assert len(listed) == 2
    newest, oldest = listed
    assert newest["user_agent"].startswith("Mozilla/5.0 (iPad)")
    assert oldest["user_agent"] == WECHAT_UA
    assert [s["current"] for s in listed] == [False, True]
    assert all(s["client_address"] == "127.0.0.1" and s["appid"] == APPID for s in listed)
    assert set(newest) == {"id", "appid", "created_at", "last_used_at", "client_address",
                           "user_agent", "current"}

    # a refresh moves last_used_at and keeps the session (the family)
    refreshed = server.post("/auth/refresh", token=phone["refresh_token"]).json()
    again = server.get("/auth/sessions", token=refreshed["access_token"]).json()["sessions"]
    assert [s["id"] for s in again] == [newest["id"], oldest["id"]]
    assert again[1]["current"] and again[1]["last_used_at"] > oldest["last_used_at"]

    # end the tablet's session from the phone: its tokens are refused, the phone's are not
    assert server.request("DELETE", f"/auth/sessions/{newest['id']}",
                          token=refreshed["access_token"]).status_code == 204
    assert_problem(server.get("/profile", token=tablet["access_token"]), 401, "token_revoked")
    assert_problem(server.post("/auth/refresh", token=tablet["refresh_token"]), 401,
                   "token_revoked")
    assert server.get("/profile", token=refreshed["access_token"]).status_code == 200
    (ended,) = rows(app, LoginSession, LoginSession.id == newest["id"])
    assert ended.ended_reason == "ended" and ended.ended_at is not None

    # ended, unknown, or someone else's: 404
    for session_id in (newest["id"], "0" * 32,
                       server.get("/auth/sessions", token=other_user["access_token"])
                       .json()["sessions"][0]["id"]):
        assert_problem(server.request("DELETE", f"/auth/sessions/{session_id}",
                                      token=refreshed["access_token"]), 404,
                       "session_not_found")
    assert server.get("/profile", token=other_user["access_token"]).status_code == 200


def test_logout_ends_the_session(app, server):
    body = logged_in(server, "o-sess-logout")
    keep = logged_in(server, "o-sess-logout")
    assert server.post("/auth/logout", token=body["access_token"]).status_code == 204
    listed = server.get("/auth/sessions", token=keep["access_token"]).json()["sessions"]
    assert len(listed) == 1 and listed[0]["current"]
    reasons = {s.ended_reason for s in rows(app, LoginSession)}
    assert "logout" in reasons


def test_session_address_is_the_client_behind_a_trusted_proxy(app_config, request):
    app_config.update(TRUSTED_PROXIES="127.0.0.1")
    server = request.getfixturevalue("server")
    body = logged_in(server, "o-sess-proxy", **{"X-Forwarded-For": "203.0.113.9"})
    (listed,) = server.get("/auth/sessions", token=body["access_token"]).json()["sessions"]
    assert listed["client_address"] == "203.0.113.9"


def test_kick_from_the_command_line(app, server, runner):
    first, second, third = (logged_in(server, "o-kick") for _ in range(3))
    out = invoke(runner, "users", "sessions", "o-kick")
    ids = [s["id"] for s in server.get("/auth/sessions", token=third["access_token"])
           .json()["sessions"]]
    assert all(i in out for i in ids) and "MicroMessenger" in out

    invoke(runner, "users", "kick", "o-kick", "--session", ids[-1])  # the oldest: first
    assert_problem(server.get("/profile", token=first["access_token"]), 401, "token_revoked")
    assert server.get("/profile", token=second["access_token"]).status_code == 200
    result = runner.invoke(args=["users", "kick", "o-kick", "--session", ids[-1]])
    assert result.exit_code != 0 and "No live session" in result.output

    assert "ended 2 sessions" in invoke(runner, "users", "kick", "o-kick")
    for body in (second, third):
        assert_problem(server.get("/profile", token=body["access_token"]), 401, "token_revoked")
    assert logged_in(server, "o-kick")  # kicking is not disabling


def test_max_sessions_per_user_ends_the_oldest(app_config, request):
    app_config.update(MAX_SESSIONS_PER_USER=1)
    server = request.getfixturevalue("server")
    app = request.getfixturevalue("app")
    first = logged_in(server, "o-one-device")
    second = logged_in(server, "o-one-device")
    assert_problem(server.get("/profile", token=first["access_token"]), 401, "token_revoked")
    assert_problem(server.post("/auth/refresh", token=first["refresh_token"]), 401,
                   "token_revoked")
    assert server.get("/profile", token=second["access_token"]).status_code == 200
    reasons = [s.ended_reason for s in rows(app, LoginSession, order=LoginSession.created_at)]
    assert reasons == ["limit", None]


def test_max_sessions_two_keeps_the_two_newest(app_config, request):
    app_config.update(MAX_SESSIONS_PER_USER=2)
    server = request.getfixturevalue("server")
    bodies = [logged_in(server, "o-two-devices") for _ in range(3)]
    codes = [server.get("/profile", token=b["access_token"]).status_code for b in bodies]
    assert codes == [401, 200, 200]
    # unlimited by default: the other tests log in many times without losing sessions


# --- login log ----------------------------------------------------------------------------

def test_login_log_rows_for_successes_and_failures(app, server, runner):
    logged_in(server, "o-log")
    logged_in(server, "o-log")
    refused = server.post("/auth/login", json={"code": "not-a-code"},
                          headers={"User-Agent": "bot/1.0"})
    assert_problem(refused, 400, "invalid_code")
    wrong_app = server.post("/auth/login", json={"code": "x", "appid": "wx-not-ours"},
                            headers={"User-Agent": "bot/1.0"})
    assert_problem(wrong_app, 400, "unknown_app")

    user = user_row(app, "o-log")
    events = rows(app, LoginEvent)
    mine = [(e.outcome, e.appid, e.user_agent, e.client_address, e.errcode, e.count)
            for e in events if e.user_id == user.id]
    assert mine == [("new", APPID, WECHAT_UA, "127.0.0.1", None, 1),
                    ("returning", APPID, WECHAT_UA, "127.0.0.1", None, 1)]
    failures = [(e.outcome, e.appid, e.user_id, e.errcode, e.user_agent)
                for e in events if e.user_agent == "bot/1.0"]
    assert failures == [("invalid_code", APPID, None, 40029, "bot/1.0"),
                        ("unknown_app", "wx-not-ours", None, None, "bot/1.0")]

    out = invoke(runner, "users", "logins", "o-log")
    lines = out.splitlines()
    assert "returning" in lines[2] and "new" in lines[3]  # newest first


def test_logs_prune_keeps_the_retention(app, server, runner):
    logged_in(server, "o-prune")
    old = logged_in(server, "o-prune-old")
    logged_in(server, "o-prune-old")
    server.post("/auth/logout", token=old["access_token"])
    user = user_row(app, "o-prune-old")
    with app.app_context():  # two rows and the ended session from 200 days ago
        long_ago = utcnow() - timedelta(days=200)
        db.session.execute(sa.update(LoginEvent).where(LoginEvent.user_id == user.id)
                           .values(at=long_ago))
        db.session.execute(sa.update(LoginSession).where(LoginSession.ended_at.is_not(None))
                           .values(ended_at=long_ago))
        db.session.commit()
    out = invoke(runner, "logs", "prune")
    assert "deleted 2 login-log rows and 1 sessions older than 180 days" in out
    assert rows(app, LoginEvent, LoginEvent.user_id == user.id) == []
    assert len(rows(app, LoginEvent)) == 1
    assert len(rows(app, LoginSession)) == 2  # the live ones
    assert "deleted 1 login-log rows" in invoke(runner, "logs", "prune", "--days", "0")


def test_openapi_documents_the_new_endpoints_and_codes(server):
    spec = server.get("/openapi.json").json()
    paths = spec["paths"]
    listing = paths["/auth/sessions"]["get"]
    assert "LoginSessionList" in str(listing["responses"]["200"])
    assert "user_disabled" in listing["responses"]["403"]["description"]
    ending = paths["/auth/sessions/{session_id}"]["delete"]
    assert set(ending["responses"]) >= {"204", "401", "403", "404"}
    assert "session_not_found" in ending["responses"]["404"]["description"]
    assert "user_disabled" in paths["/auth/login"]["post"]["responses"]["403"]["description"]
    assert "user_disabled" in paths["/auth/refresh"]["post"]["responses"]["403"]["description"]


def test_the_shipped_prune_timer_runs_logs_prune(production_env, tmp_path):
    """deploy/systemd/wxauth-prune.{service,timer}: daily, and the service's command, run as
    shipped (the install folder replaced by this checkout), prunes."""
    unit_dir = ROOT / "deploy" / "systemd"
    service = (unit_dir / "wxauth-prune.service").read_text()
    timer = (unit_dir / "wxauth-prune.timer").read_text()
    assert re.search(r"^OnCalendar=daily$", timer, re.M)
    assert re.search(r"^Persistent=true$", timer, re.M)
    assert re.search(r"^EnvironmentFile=/etc/wxauth/env$", service, re.M)
    command = re.search(r"^ExecStart=(.*)$", service, re.M).group(1).split()
    assert command[0] == "/srv/wxauth/.venv/bin/flask"
    migrate(production_env)
    pruned = run(["flask", *command[1:]], production_env)
    assert pruned.returncode == 0, pruned.stderr
    assert "login-log rows" in pruned.stdout

    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    venv_bin = f"{Path(sys.executable).parent}/"
    for name, text in (("wxauth-prune.service", service), ("wxauth-prune.timer", timer)):
        text = text.replace("/srv/wxauth/.venv/bin/", venv_bin).replace("/srv/wxauth", str(ROOT))
        (tmp_path / name).write_text(text)
    result = subprocess.run([tool, "verify", "--man=no", str(tmp_path / "wxauth-prune.timer"),
                             str(tmp_path / "wxauth-prune.service")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "wxauth-prune" not in result.stderr, result.stderr

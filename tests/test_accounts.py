"""Several mini-programs in one deployment, one account per person through the unionid:
over real HTTP with the emulator serving two appids, on every database of the matrix."""

from __future__ import annotations

import json
import threading

import flask_migrate
import jwt as pyjwt
import pytest
import requests
import sqlalchemy as sa

from helpers import (APPID, OTHER_APPID, OTHER_SECRET, SECRET, EmulatorHandle, LiveServer,
                     ServerClient, assert_problem, claims_of, emulator_post, run_threads)
from config import ConfigError
from wxauth import create_app
from wxauth.extensions import db
from wxauth.models import Account, User
from wxauth.state import state
from wxauth.services.signals import account_created, accounts_merged, user_created
from wxauth.wechat.emulator import Emulator

pytestmark = pytest.mark.databases

TWO_APPS = {APPID: {"secret": SECRET, "name": "Shop"},
            OTHER_APPID: {"secret": OTHER_SECRET, "name": "Games"}}


@pytest.fixture
def two_apps(app_config, request):
    """A server for two mini-programs, on an emulator of this test's own (a person's unionid
    must not leak from one test, or one database backend, into the next)."""
    emulator = Emulator({APPID: SECRET, OTHER_APPID: OTHER_SECRET})
    emulator_server = LiveServer(emulator)
    app_config.update(WECHAT_APPS=json.dumps(TWO_APPS), WECHAT_API_BASE=emulator_server.url)
    app = request.getfixturevalue("app")
    live = LiveServer(app)
    yield ServerClient(live.url, EmulatorHandle(emulator, emulator_server.url)), app
    live.stop()
    emulator_server.stop()


def login(server, appid, openid, unionid=None, **extra):
    mint = {"appid": appid, **({"unionid": unionid} if unionid else {}), **extra}
    code = server.emulator.mint(openid, **mint)["code"]
    response = server.post("/auth/login", json={"code": code, "appid": appid})
    assert response.status_code == 200, response.text
    return response.json()


def accounts_in(app) -> list[tuple[int, str | None]]:
    with app.app_context():
        return [(a.id, a.unionid) for a in db.session.execute(
            sa.select(Account).order_by(Account.id)).scalars()]


def test_appid_is_required_and_checked(two_apps):
    server, _ = two_apps
    code = server.emulator.mint("o-x")["code"]
    problem = assert_problem(server.post("/auth/login", json={"code": code}), 400,
                             "invalid_request")
    assert "appid" in problem["errors"]
    assert_problem(server.post("/auth/login", json={"code": code, "appid": "wx0000000000000000"}),
                   400, "unknown_app")


def test_one_app_needs_no_appid(server):
    assert server.login("o-single")["is_new_account"] is True
    code = server.emulator.mint("o-single")["code"]
    assert_problem(server.post("/auth/login", json={"code": code, "appid": OTHER_APPID}), 400,
                   "unknown_app")


def test_same_unionid_in_two_apps_is_one_account(two_apps):
    server, app = two_apps
    shop = login(server, APPID, "o-shop-ann", "u-ann")
    games = login(server, OTHER_APPID, "o-games-ann", "u-ann")
    assert (shop["is_new_user"], shop["is_new_account"]) == (True, True)
    assert (games["is_new_user"], games["is_new_account"]) == (True, False)
    assert shop["user"]["account_id"] == games["user"]["account_id"]
    assert shop["user"]["id"] != games["user"]["id"]
    again = login(server, APPID, "o-shop-ann", "u-ann")
    assert (again["is_new_user"], again["is_new_account"]) == (False, False)
    profile = server.get("/profile", token=shop["access_token"]).json()
    assert profile["account_id"] == shop["user"]["account_id"]
    assert profile["is_new_account"] is False  # Ann now uses two of the company's apps
    assert accounts_in(app) == [(shop["user"]["account_id"], "u-ann")]


def test_no_unionid_means_an_account_of_its_own(two_apps):
    server, app = two_apps
    a = login(server, APPID, "o-shop-bob")
    b = login(server, OTHER_APPID, "o-games-bob")
    assert a["is_new_account"] and b["is_new_account"]
    assert a["user"]["account_id"] != b["user"]["account_id"]
    assert a["user"]["is_new_account"] is True


def test_late_unionid_merges_into_the_oldest_account(two_apps):
    server, app = two_apps
    merges = []

    def on_merge(sender, account, merged_account_id, **extra):
        merges.append((account.id, merged_account_id))

    accounts_merged.connect(on_merge)
    try:
        shop = login(server, APPID, "o-shop-cat")  # before the Open Platform binding
        games = login(server, OTHER_APPID, "o-games-cat", "u-cat")  # bound app: a new account
        older, newer = shop["user"]["account_id"], games["user"]["account_id"]
        assert older < newer
        late = login(server, APPID, "o-shop-cat", "u-cat")  # the shop app is now bound too
    finally:
        accounts_merged.disconnect(on_merge)
    assert late["is_new_account"] is False and late["user"]["account_id"] == older
    assert server.get("/profile", token=games["access_token"]).json()["account_id"] == older
    assert accounts_in(app) == [(older, "u-cat")]
    assert merges == [(older, newer)]
    with app.app_context():
        owners = {u.appid: u.account_id for u in db.session.execute(sa.select(User)).scalars()}
    assert owners == {APPID: older, OTHER_APPID: older}


def test_the_new_user_gift_is_given_once_under_concurrency(two_apps):
    """The README's example: a gift per person, hung on account_created."""
    server, app = two_apps
    gifts, new_users = [], []
    lock = threading.Lock()

    def give_gift(sender, account, user, **extra):
        with lock:
            gifts.append(account.id)

    def count_user(sender, user, **extra):
        with lock:
            new_users.append(user.appid)

    account_created.connect(give_gift)
    user_created.connect(count_user)
    try:
        targets = [(appid, openid) for appid, openid in
                   ((APPID, "o-shop-dan"), (OTHER_APPID, "o-games-dan"))] * 8
        codes = [server.emulator.mint(openid, appid=appid, unionid="u-dan")["code"]
                 for appid, openid in targets]
        barrier = threading.Barrier(len(targets))
        results: list = [None] * len(targets)

        def go(i):
            barrier.wait()
            results[i] = requests.post(server.url + "/auth/login", timeout=60,
                                       json={"code": codes[i], "appid": targets[i][0]})

        run_threads(go, range(len(targets)))
    finally:
        account_created.disconnect(give_gift)
        user_created.disconnect(count_user)
    assert [r.status_code for r in results] == [200] * len(targets), [
        r.text for r in results if r.status_code != 200]
    bodies = [r.json() for r in results]
    assert sum(b["is_new_account"] for b in bodies) == 1
    assert sum(b["is_new_user"] for b in bodies) == 2
    assert len({b["user"]["account_id"] for b in bodies}) == 1
    assert len(gifts) == 1 and sorted(new_users) == sorted([APPID, OTHER_APPID])
    assert len(accounts_in(app)) == 1


def test_access_tokens_are_per_app(two_apps):
    server, app = two_apps
    games = login(server, OTHER_APPID, "o-games-eve")
    code = emulator_post(server.emulator.url, "/dev/phone-code",
                         {"appid": OTHER_APPID, "openid": "o-games-eve"})["code"]
    response = server.post("/profile/phone", token=games["access_token"], json={"code": code})
    assert response.status_code == 200, response.text  # OTHER_APPID's token, OTHER_APPID's code
    listing = app.test_cli_runner().invoke(args=["apps", "list"]).output
    assert "Shop" in listing and "Games" in listing
    assert OTHER_SECRET not in listing and SECRET not in listing
    lines = {line.split()[0]: line for line in listing.splitlines()[2:]}
    assert "fetched" in lines[OTHER_APPID] and "no access_token cached" in lines[APPID]
    claims = claims_of(games["access_token"])
    assert claims["appid"] == OTHER_APPID


def test_tokens_of_an_app_no_longer_configured_are_refused(two_apps, app_config):
    server, _ = two_apps
    games = login(server, OTHER_APPID, "o-games-fay")
    shop = login(server, APPID, "o-shop-fay")
    config = {k: v for k, v in app_config.items() if k != "WECHAT_APPS"}  # Games removed
    live = LiveServer(create_app(config))
    try:
        client = ServerClient(live.url, server.emulator)
        problem = assert_problem(client.get("/profile", token=games["access_token"]), 401,
                                 "token_invalid")
        assert "no longer" in problem["detail"]
        assert client.get("/profile", token=shop["access_token"]).status_code == 200
    finally:
        live.stop()


def test_accounts_show_command(two_apps):
    server, app = two_apps
    login(server, APPID, "o-shop-gus", "u-gus")
    body = login(server, OTHER_APPID, "o-games-gus", "u-gus")
    account_id = body["user"]["account_id"]
    output = app.test_cli_runner().invoke(args=["accounts", "show", str(account_id)]).output
    assert "u-gus" in output and "o-shop-gus" in output and "o-games-gus" in output
    assert "Shop" in output and "Games" in output
    missing = app.test_cli_runner().invoke(args=["accounts", "show", "999999"])
    assert missing.exit_code != 0


def test_migration_gives_existing_users_accounts(app):
    with app.app_context():
        flask_migrate.downgrade(revision="1ac93103d8e5")
        with db.engine.begin() as conn:
            for appid, openid, unionid, day in ((APPID, "o1", "u-1", 1), (OTHER_APPID, "o2", "u-1", 2),
                                                (APPID, "o3", None, 3)):
                conn.execute(sa.text(
                    "INSERT INTO users (appid, openid, unionid, session_key, gender, token_version,"
                    " created_at, updated_at, last_login_at) VALUES (:a, :o, :u, 'x', 0, 0,"
                    " :t, :t, :t)"), {"a": appid, "o": openid, "u": unionid,
                                      "t": f"2024-01-0{day} 00:00:00"})
        flask_migrate.upgrade()
        owners = {u.openid: u.account_id for u in db.session.execute(sa.select(User)).scalars()}
        db.session.remove()
    assert owners["o1"] == owners["o2"] != owners["o3"]
    assert sorted(u for _, u in accounts_in(app) if u) == ["u-1"]


@pytest.mark.parametrize("value,message", [
    ("{not json", "not valid JSON"),
    ('{"wx1234567890abcdef": {"name": "no secret"}}', "has no secret"),
    ('["wx1234567890abcdef"]', "must be a JSON object"),
    ("/nonexistent/apps.json", "cannot read"),
])
def test_wechat_apps_errors_name_the_variable(app_config, value, message):
    app_config["WECHAT_APPS"] = value
    with pytest.raises(ConfigError, match="WECHAT_APPS") as info:
        create_app(app_config)
    assert message in str(info.value)


def test_wechat_apps_from_a_file(app_config, tmp_path):
    path = tmp_path / "apps.json"
    path.write_text(json.dumps({APPID: SECRET, OTHER_APPID: {"secret": OTHER_SECRET,
                                                             "content_check": True}}))
    app_config["WECHAT_APPS"] = str(path)
    app = create_app(app_config)
    programs = state(app).programs
    assert set(programs) == {APPID, OTHER_APPID}
    assert programs[OTHER_APPID].content_check and not programs[APPID].content_check

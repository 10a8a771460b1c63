"""The person's own rights over real HTTP: ``DELETE /profile`` (account deletion, confirmed by
a fresh wx.login code) and ``GET /profile/export``, with two mini-programs on the emulator,
on every database of the matrix."""

from __future__ import annotations

import hashlib
import hmac
import io
import time
from datetime import datetime
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from PIL import Image

from config import ConfigError
from helpers import APPID, ERASURE_KEY, JWT_KEY, OTHER_APPID, assert_problem, emulator_post
from test_accounts import login, two_apps  # noqa: F401  (two_apps: a fixture)
from wxauth import create_app
from wxauth.extensions import db
from wxauth.models import DeletedSubject, LoginEvent, LoginSession
from wxauth.services.signals import account_created, account_deleted, user_created

pytestmark = pytest.mark.databases


def delete_account(server, token, code):
    return server.request("DELETE", "/profile", token=token, json={"code": code})


def fresh_code(server, appid, openid, **options):
    return server.emulator.mint(openid, appid=appid, **options)["code"]


def png(color=(10, 120, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(out, "PNG")
    return out.getvalue()


def upload_avatar(server, token, data: bytes) -> str:
    response = server.post("/profile/avatar", token=token, files={"file": ("a.png", data)})
    assert response.status_code == 200, response.text
    return response.json()["avatar_url"]


def media_file(app, url: str) -> Path:
    return Path(app.config["MEDIA_ROOT"]) / url.split("/media/", 1)[1]


def every_stored_value(app) -> str:
    """Every value of every row of every table, as one text (to look for a name in)."""
    with app.app_context():
        with db.engine.connect() as conn:
            texts = []
            for table in db.metadata.sorted_tables:
                texts += [repr(tuple(row)) for row in conn.execute(sa.select(table))]
    return "\n".join(texts)


@pytest.fixture
def signals_sent():
    """(signal name, kwargs) of user_created, account_created, account_deleted."""
    sent = []
    receivers = {name: (lambda app, _name=name, **kw: sent.append((_name, kw)))
                 for name in ("user_created", "account_created", "account_deleted")}
    for name, signal in (("user_created", user_created), ("account_created", account_created),
                         ("account_deleted", account_deleted)):
        signal.connect(receivers[name])
    yield sent
    user_created.disconnect(receivers["user_created"])
    account_created.disconnect(receivers["account_created"])
    account_deleted.disconnect(receivers["account_deleted"])


@pytest.fixture
def ann(two_apps):
    """Ann in both apps (one unionid: one account), with a nickname, a phone number and an
    uploaded avatar in the shop app: (server, app, shop login, games login, avatar URL)."""
    server, app = two_apps
    shop = login(server, APPID, "o-shop-ann", "u-ann")
    games = login(server, OTHER_APPID, "o-games-ann", "u-ann")
    token = shop["access_token"]
    assert server.patch("/profile", token=token, json={"nickname": "Ann Lee",
                                                        "city": "Hangzhou"}).status_code == 200
    phone = emulator_post(server.emulator.url, "/dev/phone-code",
                          {"appid": APPID, "openid": "o-shop-ann", "phone": "13955556666"})
    assert server.post("/profile/phone", token=token,
                       json={"code": phone["code"]}).status_code == 200
    avatar = upload_avatar(server, token, png())
    return server, app, shop, games, avatar


def test_delete_erases_the_person_in_every_app(ann, signals_sent):
    server, app, shop, games, avatar = ann
    assert media_file(app, avatar).exists()
    with app.app_context():
        assert db.session.query(LoginSession).count() == 2
        db.session.remove()
    response = delete_account(server, shop["access_token"],
                              fresh_code(server, APPID, "o-shop-ann", unionid="u-ann"))
    assert response.status_code == 204, response.text

    # every token of every app user is refused at once, refresh tokens too
    for body in (shop, games):
        assert server.get("/profile", token=body["access_token"]).status_code == 401
        assert server.post("/auth/refresh", token=body["refresh_token"]).status_code == 401
    # nothing of Ann is left in clear anywhere: not her openids, unionid, name, phone, city
    stored = every_stored_value(app)
    for value in ("o-shop-ann", "o-games-ann", "u-ann", "Ann Lee", "13955556666", "Hangzhou",
                  avatar.rsplit("/", 1)[1]):
        assert value not in stored
    assert not media_file(app, avatar).exists()  # the avatar file is gone
    with app.app_context():
        assert db.session.query(LoginSession).count() == 0
        # the login log keeps its rows (network logs: six months), linked to no one
        events = db.session.execute(sa.select(LoginEvent)).scalars().all()
        assert len(events) == 2 and {e.user_id for e in events} == {None}
        assert {e.appid for e in events} == {APPID, OTHER_APPID}
        markers = set(db.session.execute(sa.select(DeletedSubject.digest)).scalars())
        db.session.remove()

    def mark(identity):
        return hmac.new(ERASURE_KEY.encode(), identity.encode(), hashlib.sha256).hexdigest()

    assert markers == {mark(f"openid\0{APPID}\0o-shop-ann"),
                       mark(f"openid\0{OTHER_APPID}\0o-games-ann"), mark("unionid\0u-ann")}
    deleted = [kw for name, kw in signals_sent if name == "account_deleted"]
    assert deleted == [{"account_id": shop["user"]["account_id"],
                        "user_ids": sorted([shop["user"]["id"], games["user"]["id"]])}]


def test_the_returning_person_is_not_new(ann, signals_sent):
    """The README's gift, hung on account_created with `new`: given once, whatever the person
    deletes and comes back to."""
    server, app, shop, games, _ = ann
    gifts = []

    def gift(sender, account, user, new, **extra):
        if new:
            gifts.append(account.id)

    account_created.connect(gift)
    try:
        first = login(server, APPID, "o-gift", "u-gift")
        assert delete_account(server, first["access_token"],
                              fresh_code(server, APPID, "o-gift", unionid="u-gift")
                              ).status_code == 204
        signals_sent.clear()
        back = login(server, APPID, "o-gift", "u-gift")
        other_app = login(server, OTHER_APPID, "o-games-gift", "u-gift")  # never there: new
    finally:
        account_created.disconnect(gift)
    assert gifts == [first["user"]["account_id"]]
    assert (back["is_new_user"], back["is_new_account"]) == (False, False)
    assert (other_app["is_new_user"], other_app["is_new_account"]) == (True, False)
    assert [(name, kw.get("new")) for name, kw in signals_sent] == [
        ("user_created", False), ("account_created", False), ("user_created", True)]
    with app.app_context():
        outcomes = db.session.execute(sa.select(LoginEvent.outcome).where(
            LoginEvent.user_id == back["user"]["id"])).scalars().all()
        db.session.remove()
    assert outcomes == ["returning"]
    # tokens from before the deletion stay refused, though the same openid is back
    assert server.get("/profile", token=first["access_token"]).status_code == 401
    assert server.get("/profile", token=back["access_token"]).status_code == 200


def test_without_unionid_the_app_user_is_the_person(two_apps):
    server, _ = two_apps
    bob = login(server, APPID, "o-bob")
    bob_games = login(server, OTHER_APPID, "o-games-bob")  # another account: no unionid
    assert delete_account(server, bob["access_token"],
                          fresh_code(server, APPID, "o-bob")).status_code == 204
    assert server.get("/profile", token=bob_games["access_token"]).status_code == 200
    again = login(server, APPID, "o-bob")
    assert (again["is_new_user"], again["is_new_account"]) == (False, False)


def test_a_token_older_than_its_user_is_refused(server, runner):
    """`users delete` (no marker, no revocation) and the same openid back: the old token
    names the new user and carries the same version, yet is refused."""
    old = server.login("o-phoenix")
    assert runner.invoke(args=["users", "delete", "o-phoenix", "--yes"]).exit_code == 0
    time.sleep(1.1)  # iat is whole seconds
    new = server.login("o-phoenix")
    assert_problem(server.get("/profile", token=old["access_token"]), 401, "token_revoked")
    assert server.get("/profile", token=new["access_token"]).status_code == 200


def test_confirmation_from_someone_else_is_refused(two_apps):
    server, app = two_apps
    cat = login(server, APPID, "o-cat")
    login(server, APPID, "o-dog")
    token = cat["access_token"]
    problem = assert_problem(delete_account(server, token, fresh_code(server, APPID, "o-dog")),
                             403, "confirmation_mismatch")
    assert "wx.login" in problem["detail"]
    used = fresh_code(server, APPID, "o-cat")
    login_body = server.post("/auth/login", json={"code": used, "appid": APPID})
    assert login_body.status_code == 200
    assert_problem(delete_account(server, token, used), 400, "code_used")
    assert_problem(delete_account(server, token, "not-a-code"), 400, "invalid_code")
    assert_problem(server.request("DELETE", "/profile", token=token, json={}), 400,
                   "invalid_request")
    busy = delete_account(server, token, fresh_code(server, APPID, "o-cat", busy=10))
    assert_problem(busy, 503, "wechat_busy")
    assert busy.headers["Retry-After"]
    assert_problem(server.request("DELETE", "/profile", json={"code": "x"}), 401,
                   "authorization_required")
    # nothing was erased by any of them
    assert server.get("/profile", token=token).status_code == 200
    with app.app_context():
        assert db.session.query(DeletedSubject).count() == 0
        db.session.remove()


def test_an_avatar_file_another_user_uses_stays(two_apps):
    server, app = two_apps
    eve = login(server, APPID, "o-eve")
    fay = login(server, APPID, "o-fay")
    shared = upload_avatar(server, eve["access_token"], png((1, 2, 3)))
    assert upload_avatar(server, fay["access_token"], png((1, 2, 3))) == shared  # one file
    own = upload_avatar(server, eve["access_token"], png((4, 5, 6)))  # Eve replaces hers
    assert media_file(app, shared).exists()  # Fay still uses it
    replaced = upload_avatar(server, eve["access_token"], png((7, 8, 9)))
    assert not media_file(app, own).exists()  # no one uses it any more
    assert delete_account(server, eve["access_token"],
                          fresh_code(server, APPID, "o-eve")).status_code == 204
    assert not media_file(app, replaced).exists()
    assert media_file(app, shared).exists()
    assert requests.get(shared, timeout=10).status_code == 200


def test_export_has_everything_and_nothing_secret(ann):
    server, app, shop, games, avatar = ann
    bad = server.post("/auth/login", json={"code": "wrong", "appid": APPID})
    assert bad.status_code == 400
    response = server.get("/profile/export", token=games["access_token"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["account"]["id"] == shop["user"]["account_id"]
    assert body["account"]["unionid"] == "u-ann"
    users = {u["appid"]: u for u in body["users"]}
    assert set(users) == {APPID, OTHER_APPID}
    assert (users[APPID]["openid"], users[APPID]["nickname"], users[APPID]["city"],
            users[APPID]["pure_phone_number"], users[APPID]["avatar_url"]) == (
        "o-shop-ann", "Ann Lee", "Hangzhou", "13955556666", avatar)
    assert users[OTHER_APPID]["openid"] == "o-games-ann"
    assert {s["appid"] for s in body["sessions"]} == {APPID, OTHER_APPID}
    assert all(s["ended_at"] is None and s["client_address"] == "127.0.0.1"
               for s in body["sessions"])
    assert sorted(e["outcome"] for e in body["login_events"]) == ["new", "new"]
    for stamp in [body["exported_at"], users[APPID]["last_login_at"],
                  *(s["created_at"] for s in body["sessions"]),
                  *(e["at"] for e in body["login_events"])]:
        assert datetime.fromisoformat(stamp).utcoffset().total_seconds() == 0
    for secret in (shop["access_token"], shop["refresh_token"], games["access_token"],
                   games["refresh_token"], server.emulator.session_key("o-shop-ann"),
                   server.emulator.session_key("o-games-ann", OTHER_APPID), ERASURE_KEY,
                   JWT_KEY):
        assert secret not in response.text
    assert "session_key" not in response.text and "token_version" not in response.text


def test_accounts_delete_command(ann, signals_sent):
    server, app, shop, games, _ = ann
    runner = app.test_cli_runner()
    account_id = shop["user"]["account_id"]
    refused = runner.invoke(args=["accounts", "delete", str(account_id)], input="n\n")
    assert refused.exit_code != 0 and server.get("/profile", token=shop["access_token"]).ok
    result = runner.invoke(args=["accounts", "delete", str(account_id), "--yes"])
    assert result.exit_code == 0, result.output
    assert "2 app users" in result.output
    assert server.get("/profile", token=games["access_token"]).status_code == 401
    assert [name for name, _ in signals_sent] == ["account_deleted"]
    assert runner.invoke(args=["accounts", "delete", str(account_id), "--yes"]).exit_code != 0
    back = login(server, OTHER_APPID, "o-games-ann", "u-ann")
    assert back["is_new_account"] is False


def test_the_openapi_document_covers_deletion_and_export(server):
    spec = server.get("/openapi.json").json()
    delete = spec["paths"]["/profile"]["delete"]
    assert "204" in delete["responses"]
    assert "confirmation_mismatch" in delete["responses"]["403"]["description"]
    assert "code_used" in delete["responses"]["400"]["description"]
    export = spec["paths"]["/profile/export"]["get"]
    assert export["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/Export")
    exported = spec["components"]["schemas"]
    assert {"account", "users", "sessions", "login_events"} <= set(exported["Export"]["properties"])
    assert "session_key" not in exported["ExportUser"]["properties"]


@pytest.mark.parametrize("value,message", [("", "ERASURE_KEY is not set"),
                                           ("short", "ERASURE_KEY is shorter than 32 bytes")])
def test_production_needs_an_erasure_key(app_config, value, message):
    with pytest.raises(ConfigError) as info:
        create_app({**app_config, "TESTING": False, "ERASURE_KEY": value})
    assert [line for line in info.value.problems if "ERASURE_KEY" in line] == [
        next(line for line in info.value.problems if line.startswith(message))]

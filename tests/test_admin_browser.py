"""The support console in a real browser (issue 24, "Done when"): headless Chromium (Debian's,
driven by playwright-python, as tests/test_docs_browser.py) against gunicorn as shipped (two
gevent workers, production mode: SECRET_KEY, Secure cookies) and the WeChat emulator.

One gunicorn for the module. Operators are added with the real CLI; their codes are computed
by pyotp from the otpauth:// URI it printed; mini-program users log in for real. In Chinese
(the browser's language): enroll and first sign-in (QR code, TOTP, password change), search,
open a person, end a session, disable with a reason (the person's token then answers 403
user_disabled), delete an account (its token: 401 user_not_found); a form posted without its
CSRF token is refused; a viewer is refused a disable; five wrong codes lock; the audit trail
shows every one of these. Skips without Chromium or playwright; fails under CI=true.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pyotp
import pytest
import requests

from helpers import production_environment, run
from test_admin import NEW_PASSWORD, Codes, parse_enrollment
from test_docs_browser import CHROMIUM, CHROMIUM_ARGS, playwright  # noqa: F401 (fixture)
from test_resilience_gunicorn import ONE_SHOT, start_gunicorn

pytestmark = pytest.mark.xdist_group("admin-browser")


@pytest.fixture(scope="module")
def console(tmp_path_factory, emulator, playwright):  # noqa: F811
    """(gunicorn's URL, the production environment, the browser) for the module."""
    tmp_path = tmp_path_factory.mktemp("admin-browser")
    env = production_environment(tmp_path, emulator.url)
    server = start_gunicorn(env)
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                         timeout=60_000)
    try:
        yield server.url, env, browser
    finally:
        browser.close()
        server.stop()
    assert "Traceback" not in server.output(), server.output()


def add_operator(env, name: str, role: str) -> tuple[str, pyotp.TOTP]:
    added = run(["flask", "--app", "wsgi", "operators", "add", name, "--role", role], env)
    assert added.returncode == 0, added.stderr
    return parse_enrollment(added.stdout)


def mini_program_login(url: str, emulator, openid: str) -> dict:
    code = emulator.mint(openid)["code"]
    response = requests.post(url + "/auth/login", json={"code": code}, headers=ONE_SHOT,
                             timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def profile(url: str, token: str) -> requests.Response:
    return requests.get(url + "/profile", headers={"Authorization": f"Bearer {token}",
                                                   **ONE_SHOT}, timeout=30)


def new_page(browser, url: str):
    """A page of a fresh context speaking Chinese, every request kept on the server."""
    context = browser.new_context(locale="zh-CN", extra_http_headers={
        "Accept-Language": "zh-CN,zh;q=0.9"})
    page = context.new_page()
    elsewhere: list[str] = []

    def route(intercepted):
        if urlsplit(intercepted.request.url).netloc == urlsplit(url).netloc:
            intercepted.continue_()
        else:
            elsewhere.append(intercepted.request.url)
            intercepted.abort("internetdisconnected")

    page.route("**/*", route)
    page.elsewhere = elsewhere
    return page


def submit(page, selector: str) -> None:
    """Click and wait for the page it leads to."""
    page.click(selector)
    page.wait_for_load_state()


def first_sign_in(page, url: str, name: str, password: str, codes: Codes) -> None:
    page.goto(url + "/admin/")
    assert "/admin/sign-in" in page.url
    assert "登录" in page.content()
    page.fill("#name", name)
    page.fill("#password", password)
    submit(page, "#sign-in button[type=submit]")
    assert page.url.endswith("/admin/enroll")
    assert page.locator(".qr svg").count() == 1  # the otpauth:// URI as a QR code, drawn here
    assert "设置双因素登录" in page.content()
    page.fill("#totp", codes())
    submit(page, "#enroll button[type=submit]")
    assert page.url.endswith("/admin/password")
    page.fill("#password", NEW_PASSWORD)
    page.fill("#again", NEW_PASSWORD)
    submit(page, "#password-change button[type=submit]")
    assert page.url.endswith("/admin/")
    assert "密码已修改" in page.content()


def sign_in(page, url: str, name: str, code: str) -> None:
    page.goto(url + "/admin/sign-in")
    page.fill("#name", name)
    page.fill("#password", NEW_PASSWORD)
    page.fill("#totp", code)
    submit(page, "#sign-in button[type=submit]")


def open_person(page, url: str, openid: str) -> int:
    page.goto(url + "/admin/")
    page.select_option("select[name=by]", "openid")
    page.fill("input[name=q]", openid)
    submit(page, "#search button[type=submit]")
    assert openid in page.content()
    submit(page, "a.person-link")
    return int(re.search(r"/admin/accounts/(\d+)", page.url).group(1))


def test_support_work_in_the_browser_end_to_end(console, emulator):
    url, env, browser = console
    admin_password, admin_totp = add_operator(env, "lead", "admin")
    viewer_password, viewer_totp = add_operator(env, "trainee", "viewer")
    first = mini_program_login(url, emulator, "o-browser-ann")
    second = mini_program_login(url, emulator, "o-browser-ann")
    leaving = mini_program_login(url, emulator, "o-browser-bob")

    # enroll, first sign-in with password change and TOTP, in Chinese
    page = new_page(browser, url)
    codes = Codes(admin_totp)
    first_sign_in(page, url, "lead", admin_password, codes)
    cookie = next(c for c in page.context.cookies() if c["name"] == "wxauth_admin")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["secure"]
    assert "搜索" in page.content() and "登录日志" in page.content()

    # search and open the person; end one of their two sessions
    account_id = open_person(page, url, "o-browser-ann")
    assert "小程序用户" in page.content() and page.locator("#sessions tbody tr").count() == 2
    assert first["access_token"] not in page.content()
    page.locator("#sessions tbody tr").last.locator("button").click()  # the older: first's
    page.wait_for_load_state()
    assert "会话已结束" in page.content()
    assert profile(url, first["access_token"]).json()["code"] == "token_revoked"
    assert profile(url, second["access_token"]).status_code == 200

    # a form posted without its CSRF token is refused
    page.evaluate("document.querySelector('#account-disable input[name=csrf_token]').remove()")
    page.fill("#account-disable input[name=reason]", "no token")
    submit(page, "#account-disable button")
    assert page.locator("#problem-code").inner_text() == "csrf_invalid"
    assert profile(url, second["access_token"]).status_code == 200

    # disable with a reason: the mini-program's token is refused at its next request
    page.goto(f"{url}/admin/accounts/{account_id}")
    page.fill("#account-disable input[name=reason]", "盗号投诉 #4521")
    submit(page, "#account-disable button")
    assert "账号已禁用" in page.content() and "盗号投诉 #4521" in page.content()
    refused = profile(url, second["access_token"])
    assert refused.status_code == 403 and refused.json()["code"] == "user_disabled"

    # delete an account: its id typed, a reason, a fresh code
    bob = open_person(page, url, "o-browser-bob")
    page.fill("#delete input[name=confirm]", str(bob))
    page.fill("#delete input[name=reason]", "用户来电要求注销")
    page.fill("#delete input[name=totp]", codes())
    submit(page, "#delete button")
    assert page.url.endswith("/admin/") and f"账号 {bob} 已删除" in page.content()
    assert profile(url, leaving["access_token"]).json()["code"] == "user_not_found"

    # a viewer: no disable form, and a disable posted all the same is refused (403)
    viewer = new_page(browser, url)
    viewer_codes = Codes(viewer_totp)
    first_sign_in(viewer, url, "trainee", viewer_password, viewer_codes)
    viewer.goto(f"{url}/admin/accounts/{account_id}")
    assert viewer.locator("#account-disable").count() == 0
    token = viewer.locator("input[name=csrf_token]").first.get_attribute("value")
    forbidden = viewer.request.post(f"{url}/admin/accounts/{account_id}/disable",
                                    form={"csrf_token": token, "reason": "let me"})
    assert forbidden.status == 403 and 'id="problem-code">forbidden<' in forbidden.text()

    # five wrong codes lock the viewer: then even the right code is told "locked"
    stranger = new_page(browser, url)
    for _ in range(5):
        sign_in(stranger, url, "trainee", "000000")
        assert "登录失败" in stranger.content()
    sign_in(stranger, url, "trainee", viewer_codes())
    assert "已被锁定" in stranger.content()

    # the audit trail shows every one of these
    page.goto(url + "/admin/audit")
    shown = page.eval_on_selector_all(
        "tr.audit-row", "rows => rows.map(r => [r.dataset.action, r.children[1].textContent,"
                        " r.children[4].textContent, r.children[5].textContent])")
    actions = {row[0] for row in shown}
    assert {"operator_add", "sign_in", "enroll", "password_change", "search", "view_person",
            "end_session", "disable_account", "delete_account", "forbidden",
            "sign_in_failed", "lockout"} <= actions, actions
    assert ["disable_account", "lead", f"account:{account_id}", "盗号投诉 #4521"] in shown
    assert ["delete_account", "lead", f"account:{bob}", "用户来电要求注销"] in shown
    assert ["forbidden", "trainee", "", ""] in shown
    assert ["lockout", "trainee", "operator:trainee", ""] in shown
    for p in (page, viewer, stranger):
        assert p.elsewhere == [], p.elsewhere

"""Chinese for Chinese users: problem titles and details follow Accept-Language (Flask-Babel,
the zh_Hans catalogue), `code` never changes, JSON carries Chinese as UTF-8, and the catalogue,
its compiled .mo and README's error table cannot fall behind PROBLEMS."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from helpers import ROOT, assert_problem
from wxauth.errors import PROBLEMS, problem_response

HAN = re.compile(r"[\u4e00-\u9fff]")
CATALOGUE = ROOT / "wxauth" / "translations" / "zh_Hans" / "LC_MESSAGES"
PYBABEL = Path(sys.executable).with_name("pybabel")
HOW_TO_TRANSLATE = (
    "Mark each text with _l in wxauth/errors.py PROBLEMS: ProblemKind(status, code, "
    "_l('Title'), _l('Advice.'), detail=_l('What happened, in general.')); run `make messages`; "
    "fill in the new empty msgstr entries of wxauth/translations/zh_Hans/LC_MESSAGES/messages.po; "
    "run `make messages` again (compiles messages.mo); commit both (README, Development)."
)


def problem_json(app, code: str, language: str | None) -> dict:
    headers = {"Accept-Language": language} if language else {}
    with app.test_request_context(headers=headers):
        return json.loads(problem_response(code).get_data())


def test_every_problem_code_has_a_chinese_title_and_detail(app):
    lacking: dict[str, list[str]] = {}
    for code, kind in PROBLEMS.items():
        with app.test_request_context(headers={"Accept-Language": "zh-CN"}):
            texts = {"title": str(kind.title), "detail": str(kind.detail),
                     "advice": str(kind.advice)}
        missing = [name for name, text in texts.items()
                   if not HAN.search(text) and (text or name != "advice")]
        if missing:
            lacking[code] = missing
    assert not lacking, (f"These problem codes lack Simplified Chinese for: {lacking}. "
                         + HOW_TO_TRANSLATE)
    for code in PROBLEMS:  # and the answer carries them, the code unchanged
        chinese, english = problem_json(app, code, "zh"), problem_json(app, code, None)
        assert HAN.search(chinese["title"]) and HAN.search(chinese["detail"]), chinese
        assert not HAN.search(english["title"] + english["detail"]), english
        assert (chinese["code"], chinese["type"], chinese["status"]) == (
            english["code"], english["type"], english["status"]) == (
            code, english["type"], PROBLEMS[code].status)


def _messages(catalog) -> dict[str, str]:
    return {m.id: m.string for m in catalog if m.id and not m.fuzzy}


def test_the_catalogue_translates_every_marked_string_and_the_mo_is_compiled_from_it(tmp_path):
    """What `make messages` extracts (babel.cfg, keyword _l) is all in the .po, translated;
    the committed .mo says the same as the .po."""
    pot = tmp_path / "messages.pot"
    extracted = subprocess.run([str(PYBABEL), "extract", "-F", "babel.cfg", "-k", "_l",
                                "-o", str(pot), "."], cwd=ROOT, capture_output=True, text=True,
                               timeout=120)
    assert extracted.returncode == 0, extracted.stderr
    with pot.open("rb") as f:
        marked = {m.id for m in read_po(f) if m.id}
    with (CATALOGUE / "messages.po").open("rb") as f:
        po = read_po(f, locale="zh_Hans")
    translated = {k: v for k, v in _messages(po).items() if v}
    untranslated = sorted(marked - set(translated))
    assert not untranslated, (f"Marked strings without a Chinese translation: {untranslated}. "
                              + HOW_TO_TRANSLATE)
    stale = sorted(set(_messages(po)) - marked)
    assert not stale, f"The .po translates strings no longer marked: {stale}: run `make messages`"
    for msgid, text in translated.items():  # the same %(name)s arguments in both
        assert sorted(re.findall(r"%\(\w+\)s", msgid)) == sorted(
            re.findall(r"%\(\w+\)s", text)), msgid
    with (CATALOGUE / "messages.mo").open("rb") as f:
        compiled = _messages(read_mo(f))
    assert compiled == translated, (
        "wxauth/translations/zh_Hans/LC_MESSAGES/messages.mo is not compiled from the .po: "
        "run `make messages` and commit the .mo")


@pytest.mark.parametrize("accept_language, chinese", [
    ("zh", True), ("zh-CN", True), ("zh-Hans", True), ("zh_CN", True), ("zh-Hans-CN", True),
    ("zh-TW", True), ("zh-HK,zh;q=0.9", True), ("fr, zh;q=0.3", True),
    ("en", False), ("en-US,zh;q=0.5", False), ("fr", False), (None, False), ("*", False),
])
def test_accept_language_picks_the_language_of_title_and_detail(server, accept_language, chinese):
    headers = {"Accept-Language": accept_language} if accept_language else {}
    response = server.get("/profile", headers=headers)
    body = assert_problem(response, 401, "authorization_required")
    if chinese:
        assert body["title"] == "需要登录"
        assert body["detail"].startswith("此接口需要登录态。"), body["detail"]
        assert response.headers["Content-Language"] == "zh-Hans"
    else:
        assert body["title"] == "Authorization required"
        assert not HAN.search(body["detail"])
        assert response.headers["Content-Language"] == "en"
    assert "Accept-Language" in response.headers["Vary"]


def test_json_answers_carry_chinese_as_utf8_not_escapes(server):
    token = server.login("o-i18n-utf8")["access_token"]
    response = server.patch("/profile", token=token, json={"nickname": "小明🐱"})
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"  # JSON is UTF-8 (RFC 8259)
    assert "小明🐱".encode() in response.content
    assert b"\\u" not in response.content
    assert response.json()["nickname"] == "小明🐱"

    problem = server.get("/profile", headers={"Accept-Language": "zh"})
    content_type = problem.headers["Content-Type"]
    assert content_type.split(";")[0] == "application/problem+json"
    assert "charset" not in content_type or "charset=utf-8" in content_type.lower()
    assert "需要登录".encode() in problem.content and b"\\u" not in problem.content


def test_a_validation_problem_in_chinese_names_the_fields(server):
    response = server.post("/auth/login", json={"cod": "x"}, headers={"Accept-Language": "zh-CN"})
    body = assert_problem(response, 400, "invalid_request")
    assert body["title"] == "请求无效"
    assert body["detail"] == "以下字段无效：code。errors 成员列出了每个字段的问题。"
    assert body["errors"] == {"code": ["Missing data for required field."]}  # marshmallow's
    english = server.post("/auth/login", json={"cod": "x"}).json()
    assert "code: Missing data for required field." in english["detail"]


def test_a_wechat_error_in_chinese_keeps_errcode(server):
    code = server.emulator.mint("o-i18n-used")["code"]
    server.post("/auth/login", json={"code": code})
    used = server.post("/auth/login", json={"code": code}, headers={"Accept-Language": "zh-CN"})
    body = assert_problem(used, 400, "code_used")
    assert body["errcode"] == 40163
    # README's example, word for word
    assert body["title"] == "登录凭证已被使用"
    assert body["detail"] == ("微信表示该 code 已被使用过。code 只能使用一次：请重新调用 "
                              "wx.login() 并发送新的 code。")
    assert body["detail"] in (ROOT / "README.md").read_text()


def test_a_used_phone_code_says_tap_the_button_again_in_both_languages(server):
    token = server.login("o-i18n-phone")["access_token"]
    login_code = server.emulator.mint("o-i18n-phone")["code"]
    english = assert_problem(server.post("/profile/phone", token=token, json={"code": login_code}),
                             400, "invalid_code")
    assert "call wx.login" not in english["detail"]
    assert "tap the phone-number button again" in english["detail"]
    chinese = assert_problem(server.post("/profile/phone", token=token, json={"code": login_code},
                                         headers={"Accept-Language": "zh_CN"}),
                             400, "invalid_code")
    assert "获取手机号按钮" in chinese["detail"] and "请重新调用 wx.login" not in chinese["detail"]


def test_the_readme_lists_every_problem_code_with_its_chinese_title(app):
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| status | `code` | title | 中文标题"):]
    rows = {}
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        cells[1] = cells[1].strip("`")
        rows[cells[1]] = cells
    wrong = []
    for code, kind in PROBLEMS.items():
        chinese, english = problem_json(app, code, "zh"), problem_json(app, code, None)
        expected = [str(kind.status), code, english["title"], chinese["title"]]
        if rows.get(code, [])[:4] != expected:
            wrong.append(f"| {' | '.join(expected)} | when |")
    assert not wrong, ("README's Errors table lacks or misstates these rows (status, code, "
                       "title, 中文标题):\n" + "\n".join(wrong))

"""flask --app wsgi users … / wechat … through Flask's CLI runner."""

import json

from helpers import APPID


def test_users_list_show_delete(server, runner):
    server.login("o-cli-1", unionid="u-cli-1")
    server.login("o-cli-2")
    listing = runner.invoke(args=["users", "list"])
    assert listing.exit_code == 0, listing.output
    assert "o-cli-1" in listing.output and "o-cli-2" in listing.output
    assert "u-cli-1" in listing.output and "2 of 2 users" in listing.output

    shown = runner.invoke(args=["users", "show", "o-cli-1"])
    assert shown.exit_code == 0, shown.output
    assert APPID in shown.output and "u-cli-1" in shown.output
    assert server.emulator.session_key("o-cli-1") not in shown.output
    assert "session_key" not in shown.output

    missing = runner.invoke(args=["users", "show", "o-nobody"])
    assert missing.exit_code != 0 and "no user" in missing.output

    refused = runner.invoke(args=["users", "delete", "o-cli-2"], input="n\n")
    assert refused.exit_code != 0
    deleted = runner.invoke(args=["users", "delete", "o-cli-2"], input="y\n")
    assert deleted.exit_code == 0, deleted.output
    assert "o-cli-2" not in runner.invoke(args=["users", "list"]).output


def test_wechat_code_and_encrypt_against_a_running_emulator(server, runner, emulator):
    result = runner.invoke(args=["wechat", "code", "o-cli-code", "--url", emulator.url])
    assert result.exit_code == 0, result.output
    code = result.output.strip()
    login = server.post("/auth/login", json={"code": code})
    assert login.status_code == 200
    token = login.json()["access_token"]

    result = runner.invoke(args=["wechat", "encrypt", "o-cli-code", '{"nickName": "CLI"}',
                                 "--url", emulator.url])
    assert result.exit_code == 0, result.output
    detail = json.loads(result.output)
    response = server.post("/profile", token=token, json=detail)
    assert response.json()["nickname"] == "CLI"

    for data, why in (('{"nickName": "\\ud800"}', "unpaired surrogate"), ("{", "not JSON")):
        result = runner.invoke(args=["wechat", "encrypt", "o-cli-code", data, "--url", emulator.url])
        assert result.exit_code == 2 and why in result.output and "Traceback" not in result.output


def test_wechat_code_without_emulator_says_what_to_do(runner):
    result = runner.invoke(args=["wechat", "code", "--url", "http://127.0.0.1:9"])
    assert result.exit_code != 0
    assert "no WeChat emulator answers" in result.output

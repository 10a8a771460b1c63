"""What the README, .env.example, the Makefile and the example mini-program tell a developer
holds: the curl walk-through on another port, the helper's real storage key, every setting
documented, `make run HOST=`, and an example that opens in WeChat DevTools as it is."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from helpers import ROOT, Process, environment, free_port, run
from isolation import SETTINGS

README = (ROOT / "README.md").read_text()
HAN = re.compile(r"[\u4e00-\u9fff]")
MINIPROGRAM = ROOT / "miniprogram"


def need(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{program} is required under CI=true")
        pytest.skip(f"{program} is not installed")
    return path


def section(title: str) -> str:
    start = README.index(f"\n{title}\n")
    end = README.find("\n## ", start + len(title) + 2)
    return README[start:end if end != -1 else None]


def test_the_quickstart_walkthrough_works_on_another_port(tmp_path):
    """The README's curl block, run as it stands against `make run`'s server on a port that is
    not 5000 (its `.venv/bin/flask` is this interpreter's flask)."""
    need("curl")
    quickstart = section("## Quickstart (one minute)")
    block = next(b for b in re.findall(r"```sh\n(.*?)```", quickstart, re.S)
                 if "wechat code alice" in b)
    port = free_port()
    assert port != 5000
    env = environment(tmp_path, FLASK_DEBUG="1", PORT=str(port))
    upgrade = run(["flask", "--app", "wsgi", "db", "upgrade"], env)
    assert upgrade.returncode == 0, upgrade.stderr
    server = Process(["flask", "--app", "wsgi", "run", "--host", "127.0.0.1", "--port",
                      str(port)], env, f"http://127.0.0.1:{port}")
    try:
        script = "set -eu\n" + block.replace(".venv/bin/flask", f'"{sys.executable}" -m flask')
        result = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=120)
    finally:
        server.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"is_new_user": true' in result.stdout.replace(":true", ": true")
    assert re.search(r'"nickname":\s*"Alice"', result.stdout), result.stdout
    assert '"title": "需要登录"' in result.stdout  # step 5, as UTF-8 text


def test_readme_snippets_read_the_login_state_where_the_helper_keeps_it():
    helper = (MINIPROGRAM / "kit" / "miniprogram_dist" / "core.js").read_text()
    key = re.search(r"options\.storageKey \|\| '(\w+)'", helper).group(1)
    token_field = re.search(r"accessToken: body\.access_token", helper) and "accessToken"
    assert token_field
    reads = re.findall(r"wx\.getStorageSync\('([^']*)'\)(\.\w+)?", README)
    assert reads, "the README's plain wx snippets should show where the token is"
    assert all(name == key and field == f".{token_field}" for name, field in reads), reads
    assert f"storage key `{key}`" in README


def test_env_example_lists_every_setting_with_a_comment():
    lines = (ROOT / ".env.example").read_text().splitlines()
    assignment = re.compile(r"#? ?([A-Z][A-Z0-9_]*)=")
    uncommented, missing = [], []
    for name in SETTINGS:
        index = next((i for i, line in enumerate(lines)
                      if (m := assignment.match(line)) and m.group(1) == name), None)
        if index is None:
            missing.append(name)
            continue
        while index > 0 and assignment.match(lines[index - 1]):
            index -= 1  # settings described together, e.g. WECHAT_APPID and WECHAT_SECRET
        if index == 0 or not lines[index - 1].startswith("# "):
            uncommented.append(name)
    assert not missing, f".env.example lacks {missing}: add each, commented out at its default"
    assert not uncommented, f"no comment above {uncommented} in .env.example"


def test_readme_documents_every_setting():
    configuration = section("## Configuration")
    missing = [name for name in SETTINGS if f"`{name}`" not in configuration]
    assert not missing, f"README's Configuration table lacks {missing}"
    assert "outbound" in configuration[configuration.index("`WECHAT_PROXY`"):][:300]


@pytest.mark.parametrize("arguments, host, port", [
    ([], "127.0.0.1", "5000"), (["HOST=0.0.0.0"], "0.0.0.0", "5000"),
    (["HOST=0.0.0.0", "PORT=8123"], "0.0.0.0", "8123"),
])
def test_make_run_listens_where_host_says(arguments, host, port):
    make = need("make")
    env = {k: v for k, v in os.environ.items() if k not in ("HOST", "PORT", "MAKEFLAGS")}
    dry = subprocess.run([make, "-n", "run", *arguments], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert f"flask --app wsgi run --host {host} --port {port}" in dry.stdout, dry.stdout
    assert "make run HOST=0.0.0.0" in README


# --- the example mini-program, as WeChat DevTools opens it ---------------------------------

def example_root():
    project = json.loads((MINIPROGRAM / "project.config.json").read_text())
    return (MINIPROGRAM / project.get("miniprogramRoot", "")).resolve(), project


def test_the_example_opens_in_devtools_as_it_is_in_the_repository():
    """Opened at miniprogram/: every page's files, every require() and every image are inside
    the mini-program's root, tracked (nothing to generate first), and the node tests and the
    kit's npm-only files (its Taro entry, which requires @tarojs/taro) are left out of the
    package."""
    root, project = example_root()
    ignored = project["packOptions"]["ignore"]
    assert {"type": "folder", "value": "test"} in ignored
    assert {"type": "file", "value": "kit/taro.js"} in ignored
    left_out = [root / i["value"] for i in ignored]
    app = json.loads((root / "app.json").read_text())
    files = [root / "app.js", root / "app.json", root / app["sitemapLocation"]]
    for page in app["pages"]:
        files += [root / f"{page}.{ext}" for ext in ("js", "json", "wxml", "wxss")]
    scripts = [p for p in root.rglob("*.js") if "test" not in p.relative_to(root).parts
               and not any(p == out or p.is_relative_to(out) for out in left_out)]
    for script in scripts:
        code = re.sub(r"/\*.*?\*/|^\s*//[^\n]*", "", script.read_text(), flags=re.S | re.M)
        for target in re.findall(r"require\('([^']+)'\)", code):
            resolved = (script.parent / target).resolve()
            assert resolved.is_relative_to(root), f"{script}: {target} is outside the root"
            files.append(resolved)
    for markup in root.rglob("*.wxml"):
        files += [root / path.lstrip("/")
                  for path in re.findall(r"'(/[^']+\.png)'", markup.read_text())]
    missing = [str(f) for f in files if not f.is_file()]
    assert not missing, missing
    if (ROOT / ".git").exists():
        need("git")
        check = subprocess.run(["git", "check-ignore", *map(str, files)], cwd=ROOT,
                               capture_output=True, text=True)
        assert check.stdout == "", f"git ignores files the example needs: {check.stdout}"
    assert "miniprogram-example" not in (ROOT / "Makefile").read_text()


def test_the_default_avatar_is_a_real_image():
    root, _ = example_root()
    login = (root / "example/pages/login/login.wxml").read_text()
    path = re.search(r"'(/[^']*default-avatar\.png)'", login).group(1)
    with Image.open(root / path.lstrip("/")) as image:
        assert image.format == "PNG"
        assert min(image.size) >= 64, image.size
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 1, "a flat placeholder, not a picture"


def test_the_example_speaks_chinese():
    root, _ = example_root()
    app = json.loads((root / "app.json").read_text())
    titles = [app["window"]["navigationBarTitleText"]]
    english: list[str] = []
    for page in app["pages"]:
        titles.append(json.loads((root / f"{page}.json").read_text())["navigationBarTitleText"])
        markup = re.sub(r"<!--.*?-->|\{\{.*?\}\}", "", (root / f"{page}.wxml").read_text(),
                        flags=re.S)
        texts = [t.strip() for t in re.findall(r">([^<]+)<", markup) if t.strip()]
        texts += re.findall(r'placeholder="([^"]+)"', markup)
        english += [t for t in texts if not HAN.search(t) and t not in ("-",)]
        code = (root / f"{page}.js").read_text()
        english += [s for s in re.findall(r"'([^'\n]*)'", code)
                    if re.search(r"[A-Za-z]+ [A-Za-z]+", s) and not HAN.search(s)]
    assert all(HAN.search(title) for title in titles), titles
    assert not english, f"English texts a user sees in the example: {english}"

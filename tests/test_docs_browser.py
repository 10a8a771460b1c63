"""/docs in a real browser with no network: headless Chromium (Debian's, driven by
playwright-python) opens the Swagger UI page of a real gunicorn process and must list every
operation, with every request going to the app itself and none elsewhere (a CDN was the old
way: offline, or from mainland China, the page stayed blank).

Skips without Chromium or playwright; under CI=true (.ci/run, which installs them) it fails
instead.
"""

from __future__ import annotations

import os
import shutil
from urllib.parse import urlsplit

import pytest

import services
from helpers import Process, free_port

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# what a root, headless, offline Chromium needs; playwright adds --headless and a fresh profile
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync",
                 # no name resolves but loopback: a request that escaped the route below would
                 # fail too, as on a machine without network
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
OPERATIONS = {"POST /auth/login", "POST /auth/refresh", "POST /auth/logout",
              "GET /auth/verify", "GET /auth/sessions", "DELETE /auth/sessions/{session_id}",
              "GET /auth/session", "GET /profile", "POST /profile", "PATCH /profile",
              "DELETE /profile", "GET /profile/export",
              "POST /profile/phone", "POST /profile/avatar", "GET /healthz",
              "POST /oauth/introspect", "GET /oauth/wechat/access_token",
              "GET /.well-known/openid-configuration", "GET /.well-known/jwks.json"}


def _need(what: str) -> None:
    if services.IN_CI:
        pytest.fail(f"CI=true requires the /docs browser test: {what}")
    pytest.skip(f"{what}: SKIPPING the /docs browser test")


@pytest.fixture(scope="module")
def playwright():
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _need(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need("playwright-python is not installed (requirements-dev.txt)")
    with sync_playwright() as p:
        yield p


def test_docs_lists_the_operations_without_network(playwright, production_env, tmp_path):
    from playwright.sync_api import TimeoutError as RenderTimeout

    port = free_port()
    env = dict(production_env, GUNICORN_BIND=f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}"
    server = Process(["gunicorn", "wsgi:app"], env, url, ready=("GET", "/openapi.json"))
    own, elsewhere, page_errors = [], [], []

    def route(intercepted):
        request_url = intercepted.request.url
        if urlsplit(request_url).netloc == urlsplit(url).netloc:
            own.append(request_url)
            intercepted.continue_()
        else:  # the internet is not there
            elsewhere.append(request_url)
            intercepted.abort("internetdisconnected")

    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                         timeout=60_000)
    try:
        page = browser.new_page()
        page.route("**/*", route)
        page.on("pageerror", lambda error: page_errors.append(str(error)))
        page.goto(url + "/docs", wait_until="load", timeout=60_000)
        try:
            page.wait_for_selector(".opblock", timeout=30_000)
        except RenderTimeout:
            pass  # nothing rendered: the assertions below say what the page lacked
        shown = page.eval_on_selector_all(
            ".opblock-summary",
            "blocks => blocks.map(b => b.querySelector('.opblock-summary-method').textContent"
            " + ' ' + b.querySelector('.opblock-summary-path').dataset.path)")
        operation_ids = page.locator(".opblock-summary-operation-id").all_inner_texts()
        page.screenshot(path=str(tmp_path / "docs.png"), full_page=True)
    finally:
        browser.close()
        server.stop()

    assert elsewhere == [], f"the page asked the internet for {elsewhere}"
    assert page_errors == [], page_errors
    assert set(shown) == OPERATIONS, shown
    assert {"login", "refreshToken", "getProfile"} <= set(operation_ids), operation_ids
    assert any(u.endswith("/docs/swagger-ui-bundle.js") for u in own), own
    assert any(u.endswith("/openapi.json") for u in own), own

"""deploy/: the shipped nginx site (deploy/nginx/wxauth.conf) run by a real nginx with a
self-signed certificate in front of real gunicorn started as the systemd unit starts it
(deploy/systemd/wxauth.service), and the unit itself.

nginx is Debian's nginx-light (`.ci/run` installs it): without it these tests skip, under
CI=true they fail.
"""

from __future__ import annotations

import configparser
import datetime
import ipaddress
import json
import os
import re
import runpy
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from requests.adapters import HTTPAdapter

from helpers import ROOT, Process, free_port, migrate, run
from services import IN_CI
from wxauth.errors import PROBLEM_TYPE_BASE, PROBLEMS

SITE = ROOT / "deploy" / "nginx" / "wxauth.conf"
PROTECT = ROOT / "deploy" / "nginx" / "wxauth-protect.conf"
ADMIN = ROOT / "deploy" / "nginx" / "wxauth-admin.conf"
UNIT = ROOT / "deploy" / "systemd" / "wxauth.service"
ENV_EXAMPLE = ROOT / "deploy" / "systemd" / "env.example"
INSTALL_DIR = "/srv/wxauth"  # the unit's paths, replaced by this checkout in the tests


def _nginx() -> str:
    found = shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if found:
        return found
    if IN_CI:
        pytest.fail("CI=true and nginx is not installed (.ci/run installs nginx-light)")
    pytest.skip("nginx is not installed (apt-get install nginx-light; .ci/run does)")


def substitute(text: str, replacements: list[tuple[str, str]], source: Path) -> str:
    """Replace each shipped value by the test's; each must be in the shipped file, so a
    changed deploy file fails here instead of being tested half-edited."""
    for old, new in replacements:
        assert old in text, f"{source.relative_to(ROOT)} no longer contains {old!r}"
        text = text.replace(old, new)
    return text


def unit_sections() -> dict[str, dict[str, list[str]]]:
    """section → key → values of the shipped unit (systemd keys may repeat)."""
    parser = configparser.RawConfigParser(strict=False, interpolation=None,
                                          dict_type=_MultiDict)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return {name: {key: value.split("\n") for key, value in parser[name].items()}
            for name in parser.sections()}


class _MultiDict(dict):
    """configparser storage keeping every value of a repeated key (one per line)."""

    def __setitem__(self, key, value):
        if isinstance(value, list) and key in self and isinstance(self[key], list):
            self[key].extend(value)
        else:
            super().__setitem__(key, value)


def unit_command(env: dict[str, str]) -> list[str]:
    """The unit's ExecStart as `python -m gunicorn …` run from this checkout."""
    (exec_start,) = unit_sections()["Service"]["ExecStart"]
    executable, *args = shlex.split(exec_start)
    assert executable == f"{INSTALL_DIR}/.venv/bin/gunicorn"
    return ["gunicorn", *(a.replace(INSTALL_DIR, str(ROOT)) for a in args)]


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1: (certificate, key) PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "localhost.pem", directory / "localhost.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return cert_file, key_file


class Nginx:
    """A private nginx: the shipped site with the test's ports, certificate, upstream and
    folders, included from a minimal nginx.conf, in the foreground; with `protected_port`,
    also deploy/nginx/wxauth-protect.conf in front of a service on that port; with
    `admin_allow`, also deploy/nginx/wxauth-admin.conf allowing that address only."""

    def __init__(self, binary: str, root: Path, *, upstream_port: int, media_root: Path,
                 protected_port: int | None = None, admin_allow: str | None = None):
        self.root = root
        self.http_port, self.https_port = free_port(), free_port()
        self.logs = root / "logs"
        self.logs.mkdir(parents=True)
        self.cert, key = make_certificate(root)
        site = substitute(SITE.read_text(), [
            ("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};"),
            ("listen 80;", f"listen 127.0.0.1:{self.http_port};"),
            ("listen 443 ssl http2;", f"listen 127.0.0.1:{self.https_port} ssl http2;"),
            ("server_name api.example.com;", "server_name localhost;"),
            ("/etc/ssl/certs/api.example.com.pem", str(self.cert)),
            ("/etc/ssl/private/api.example.com.key", str(key)),
            ("alias /var/lib/wxauth/media/;", f"alias {media_root}/;"),
            ("/var/log/nginx/", f"{self.logs}/"),
        ], SITE)
        if protected_port is not None:  # deploy/nginx/wxauth-protect.conf in front of it
            service = f"proxy_pass http://127.0.0.1:{protected_port};"
            snippet = substitute(PROTECT.read_text(),
                                 [("proxy_pass http://127.0.0.1:9000;", service)], PROTECT)
            (root / "wxauth-protect.conf").write_text(snippet)
            include = f"    include {root}/wxauth-protect.conf;\n\n    location / {{\n"
            site = substitute(site, [("    location / {\n", include)], SITE)
        if admin_allow is not None:  # deploy/nginx/wxauth-admin.conf, allowing one address
            snippet = substitute(ADMIN.read_text(), [
                ("    allow 10.8.0.0/24;", f"    allow {admin_allow};"),
                ("    allow 192.0.2.0/24;", "    # (office)")], ADMIN)
            (root / "wxauth-admin.conf").write_text(snippet)
            include = f"    include {root}/wxauth-admin.conf;\n\n    location / {{\n"
            site = substitute(site, [("    location / {\n", include)], SITE)
        (root / "wxauth.conf").write_text(site)
        temp = "\n".join(f"    {kind}_temp_path {root / kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        # as root, the workers would run as nobody, who cannot enter pytest's 0700 folders
        user = "user root;\n" if os.geteuid() == 0 else ""
        (root / "nginx.conf").write_text(
            f"{user}worker_processes 1;\nevents {{ worker_connections 256; }}\n"
            f"http {{\n    include /etc/nginx/mime.types;\n"
            f"    default_type application/octet-stream;\n{temp}\n"
            f"    access_log {self.logs}/access.log;\n    include {root}/wxauth.conf;\n}}\n")
        self.output = open(root / "nginx.out", "w+")
        self.proc = subprocess.Popen(
            [binary, "-p", str(root), "-e", "stderr", "-c", str(root / "nginx.conf"),
             "-g", f"daemon off; pid {root}/nginx.pid;"],
            stdout=self.output, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("nginx did not start:\n" + self.read_output())
            try:
                socket.create_connection(("127.0.0.1", self.https_port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError("nginx did not listen:\n" + self.read_output())

    @property
    def url(self) -> str:
        return f"https://localhost:{self.https_port}"

    def read_output(self) -> str:
        self.output.flush()
        self.output.seek(0)
        return self.output.read()

    def access_line(self, marker: str) -> str:
        """The site's access-log line containing `marker` (nginx writes it just after
        answering: waited for)."""
        return eventually(lambda: next((line for line in (self.logs / "wxauth.access.log")
                                        .read_text().splitlines() if marker in line), None))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful shutdown
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class SourceAddress(HTTPAdapter):
    """Connect from a given local address (127.0.0.2: a client that is not the proxy)."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def https_client(cert: Path, source: str | None = None) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would replace `verify`, a proxy intervene
    session.verify = str(cert)
    if source:
        session.mount("https://", SourceAddress(source))
    return session


def eventually(probe, timeout: float = 5.0):
    """`probe()`'s first truthy result within `timeout` seconds; AssertionError if none."""
    deadline = time.monotonic() + timeout
    while not (result := probe()):
        assert time.monotonic() < deadline, "not within %s s" % timeout
        time.sleep(0.05)
    return result


def app_line(server: Process, request_id: str) -> dict:
    """The app's one access line for the request with this id."""
    lines = eventually(lambda: [r for r in app_log(server) if r["request_id"] == request_id])
    assert len(lines) == 1, lines
    return lines[0]


def app_log(server: Process) -> list[dict]:
    """The app's access lines (LOG_FORMAT=json) from gunicorn's output."""
    lines = []
    for line in server.output().splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("logger") == "wxauth.request":
                lines.append(record)
    return lines


def noisy_png(size: int) -> bytes:
    """A PNG of random pixels (incompressible) of about `size` bytes."""
    from io import BytesIO

    from PIL import Image

    side = int((size / 3) ** 0.5)
    out = BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(out, "PNG")
    return out.getvalue()


def assert_proxy_problem(response, status: int, code: str) -> dict:
    """nginx's own problem answers carry the app's type, title and advice for `code`."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    body = response.json()
    kind = PROBLEMS[code]
    assert body == {"type": PROBLEM_TYPE_BASE + code, "title": str(kind.title), "status": status,
                    "detail": body["detail"], "code": code}
    assert body["detail"].endswith(str(kind.advice))
    return body


@pytest.fixture
def nginx_binary() -> str:
    return _nginx()


def test_nginx_site_in_front_of_gunicorn(nginx_binary, production_env, emulator, tmp_path):
    """HTTPS login, a 1.9 MiB avatar accepted and then served by nginx from MEDIA_ROOT, the
    request id passed through, X-Forwarded-For honoured only with TRUSTED_PROXIES."""
    media = tmp_path / "media"
    app_port = free_port()
    env = dict(production_env, GUNICORN_BIND=f"127.0.0.1:{app_port}", GUNICORN_WORKERS="1",
               MEDIA_ROOT=str(media), LOG_FORMAT="json", TRUSTED_PROXIES="127.0.0.1")
    migrate(env)
    app_url = f"http://127.0.0.1:{app_port}"
    nginx = Nginx(nginx_binary, tmp_path / "nginx", upstream_port=app_port, media_root=media)
    client = https_client(nginx.cert)
    internet = https_client(nginx.cert, source="127.0.0.2")  # a client that is not a proxy
    try:
        server = Process(unit_command(env), env, app_url)
        try:
            # plain HTTP goes to HTTPS
            plain = client.get(f"http://localhost:{nginx.http_port}/healthz",
                               allow_redirects=False, timeout=10)
            assert plain.status_code == 301
            assert plain.headers["Location"] == "https://localhost/healthz"

            # login over HTTPS (the certificate checked), the client's request id passed through
            code = emulator.mint("o-nginx")["code"]
            login = internet.post(nginx.url + "/auth/login", json={"code": code}, timeout=10,
                                  headers={"X-Forwarded-For": "203.0.113.9",
                                           "X-Request-ID": "nginx-test-login-1"})
            assert login.status_code == 200, login.text
            assert login.headers["Server"] == "nginx"
            assert login.headers["X-Request-ID"] == "nginx-test-login-1"
            assert login.headers["Strict-Transport-Security"].startswith("max-age=")
            token = login.json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            # the address the app records is the client's (127.0.0.2, which nginx puts at the
            # end of X-Forwarded-For): not nginx's 127.0.0.1, not the forged 203.0.113.9
            line = app_line(server, "nginx-test-login-1")
            assert line["path"] == "/auth/login" and line["remote_addr"] == "127.0.0.2"

            # a trusted load balancer in front of nginx (127.0.0.1 is in TRUSTED_PROXIES):
            # its X-Forwarded-For names the client; with no X-Request-ID nginx makes one
            probe = client.get(nginx.url + "/healthz?probe=lb", timeout=10,
                               headers={"X-Forwarded-For": "203.0.113.7"})
            assert probe.status_code == 200, probe.text
            request_id = probe.headers["X-Request-ID"]
            assert re.fullmatch(r"[0-9a-f]{32}", request_id)
            logged = nginx.access_line('"GET /healthz?probe=lb HTTP/1.1"')
            assert logged.endswith(f" request_id={request_id}")  # nginx's $request_id …
            line = app_line(server, request_id)  # … is the app's
            assert line["path"] == "/healthz" and line["remote_addr"] == "203.0.113.7"

            # a 1.9 MiB avatar: over nginx's default 1m, within AVATAR_MAX_BYTES
            image = noisy_png(int(1.95 * 1024 * 1024))
            assert 1.9 * 1024 * 1024 < len(image) < 2 * 1024 * 1024
            upload = client.post(nginx.url + "/profile/avatar", headers=auth, timeout=30,
                                 files={"file": ("avatar.png", image, "image/png")})
            assert upload.status_code == 200, upload.text
            avatar_url = upload.json()["avatar_url"]
            # X-Forwarded-Proto and the Host with its port: the public URL, through nginx
            assert avatar_url.startswith(nginx.url + "/media/avatars/"), avatar_url
            stored = media / avatar_url.split("/media/", 1)[1]

            # /media/ answered by nginx from MEDIA_ROOT, cacheable for good; gunicorn never sees it
            served = client.get(avatar_url, timeout=10)
            assert served.status_code == 200
            assert served.headers["Server"] == "nginx"
            assert served.headers["Content-Type"] == "image/png"
            assert "immutable" in served.headers["Cache-Control"]
            assert served.headers["X-Content-Type-Options"] == "nosniff"
            assert served.content == stored.read_bytes()
            assert "X-Request-ID" not in served.headers  # (the app sets it on every answer)
            assert not [r for r in app_log(server) if r["path"].startswith("/media/")]

            # one byte over AVATAR_MAX_BYTES, within the body limit: the app's own answer
            over = client.post(nginx.url + "/profile/avatar", headers=auth, timeout=30,
                               files={"file": ("a.png", b"\0" * (2 * 1024 * 1024 + 1))})
            assert over.status_code == 413 and over.json()["code"] == "payload_too_large"
            assert "X-Request-ID" in over.headers  # (the app's: nginx's own answers lack it)
            # bodies the app would refuse by their size alone: nginx refuses them, in the app's
            # format (the app would answer before reading them, failing nginx's upload: 502)
            zeros = b"\0" * (8 * 2**20)
            for path, body in (("/profile/avatar", {"files": {"file": zeros[:2 * 2**20 + 20_000]}}),
                               ("/profile/avatar", {"files": {"file": zeros}}),
                               ("/auth/login", {"json": {"code": "0" * 70_000}})):  # over 64k
                refused = client.post(nginx.url + path, headers=auth, timeout=30, **body)
                assert_proxy_problem(refused, 413, "payload_too_large")
                assert "X-Request-ID" not in refused.headers
            # of all these 413s, the app answered only the one over AVATAR_MAX_BYTES
            assert [r["path"] for r in app_log(server) if r["status"] == 413] == ["/profile/avatar"]
        finally:
            server.stop()

        # gunicorn down: avatars are still served; the API answers 503 + Retry-After
        assert client.get(avatar_url, timeout=10).content == stored.read_bytes()
        down = client.get(nginx.url + "/healthz", timeout=10)
        assert_proxy_problem(down, 503, "service_unavailable")
        assert down.headers["Retry-After"] == "5"

        # without TRUSTED_PROXIES, X-Forwarded-For is ignored: the app sees nginx's address
        untrusted = dict(env, TRUSTED_PROXIES="",
                         WXAUTH_INSTANCE_PATH=str(tmp_path / "untrusted"))
        server = Process(unit_command(untrusted), untrusted, app_url)
        try:
            for session, header in ((client, "203.0.113.7"), (internet, "203.0.113.9")):
                probe = session.get(nginx.url + "/healthz", timeout=10,
                                    headers={"X-Forwarded-For": header})
                assert probe.status_code == 200
                line = app_line(server, probe.headers["X-Request-ID"])
                assert line["remote_addr"] == "127.0.0.1"
        finally:
            server.stop()
    finally:
        nginx.stop()
    assert "[emerg]" not in nginx.read_output() and "[alert]" not in nginx.read_output()


def test_the_console_only_from_the_allowed_network(nginx_binary, production_env, tmp_path):
    """deploy/nginx/wxauth-admin.conf: /admin/ answers the allowed address (a Secure session
    cookie over TLS, the operator's address in the audit trail) and nginx's 403 anyone else,
    whose other requests still pass."""
    app_port = free_port()
    env = dict(production_env, GUNICORN_BIND=f"127.0.0.1:{app_port}", GUNICORN_WORKERS="1",
               MEDIA_ROOT=str(tmp_path / "media"), TRUSTED_PROXIES="127.0.0.1")
    migrate(env)
    added = run(["flask", "--app", "wsgi", "operators", "add", "ops", "--role", "admin"], env)
    password = re.search(r"^password\s+(\S+)$", added.stdout, re.M).group(1)
    nginx = Nginx(nginx_binary, tmp_path / "nginx", upstream_port=app_port,
                  media_root=tmp_path / "media", admin_allow="127.0.0.1")
    office = https_client(nginx.cert)
    internet = https_client(nginx.cert, source="127.0.0.2")
    server = None
    try:
        server = Process(unit_command(env), env, f"http://127.0.0.1:{app_port}")
        refused = internet.get(nginx.url + "/admin/sign-in", timeout=10)
        assert refused.status_code == 403 and "wxauth_admin" not in refused.headers.get(
            "Set-Cookie", "")
        assert internet.get(nginx.url + "/healthz", timeout=10).status_code == 200
        page = office.get(nginx.url + "/admin/sign-in", timeout=10)
        assert page.status_code == 200
        assert "Secure" in page.headers["Set-Cookie"]
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        form = {"csrf_token": token, "name": "ops", "password": password}
        # over HTTPS, Flask-WTF also wants the form's page as the Referer (a browser sends
        # it: Referrer-Policy same-origin); the origin as seen through the proxy headers
        no_referer = office.post(nginx.url + "/admin/sign-in", data=form, timeout=10)
        assert no_referer.status_code == 400 and "csrf_invalid" in no_referer.text
        signed_in = office.post(nginx.url + "/admin/sign-in", timeout=10, data=form,
                                headers={"Referer": nginx.url + "/admin/sign-in"},
                                allow_redirects=False)
        assert signed_in.status_code == 302, signed_in.text
        assert signed_in.headers["Location"] == "/admin/enroll"
        assert office.get(nginx.url + "/admin/enroll", timeout=10).status_code == 200
    finally:
        if server is not None:
            server.stop()
        nginx.stop()
    shown = run(["flask", "--app", "wsgi", "audit", "show", "--action", "sign_in"], env)
    assert re.search(r"\bops\s+127\.0\.0\.1\s+sign_in\b", shown.stdout), shown.stdout


def test_systemd_unit():
    """The unit starts gunicorn with the repo's gunicorn.conf.py, reads /etc/wxauth/env,
    restarts on failure but not on a configuration error, outwaits gunicorn's graceful stop,
    and is sandboxed with room to write only where wxauth writes."""
    unit = unit_sections()
    service = {key: values[-1] for key, values in unit["Service"].items()}
    assert service["EnvironmentFile"] == "/etc/wxauth/env"
    assert service["Type"] == "notify"  # gunicorn's arbiter calls sd_notify(READY=1)
    assert service["WorkingDirectory"] == INSTALL_DIR
    assert unit_command({}) == ["gunicorn", "--config", str(ROOT / "gunicorn.conf.py"),
                                "wsgi:app"]
    assert service["Restart"] == "on-failure"
    assert service["User"] == "wxauth"

    settings = runpy.run_path(str(ROOT / "gunicorn.conf.py"))  # (GUNICORN_* are unset here)
    assert service["KillSignal"] == "SIGTERM"  # gunicorn's graceful stop
    assert int(service["TimeoutStopSec"]) > settings["graceful_timeout"]

    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict",
                       "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
                       "CapabilityBoundingSet": ""}.items():
        assert service[key] == value, key
    # ProtectSystem=strict leaves writable only the StateDirectory (/var/lib/wxauth): the
    # instance folder and MEDIA_ROOT the unit sets live there
    state_dir = Path("/var/lib") / service["StateDirectory"]
    defaults = dict(item.split("=", 1) for item in shlex.split(service["Environment"]))
    for name in ("WXAUTH_INSTANCE_PATH", "MEDIA_ROOT"):
        assert Path(defaults[name]).is_relative_to(state_dir), name


def test_systemd_unit_refuses_to_loop_on_a_configuration_error(production_env):
    """RestartPreventExitStatus names the status gunicorn exits with when wsgi.py refuses the
    settings, as the unit starts it."""
    prevent = unit_sections()["Service"]["RestartPreventExitStatus"][-1].split()
    env = dict(production_env, JWT_ALGORITHM="HS256", JWT_SECRET_KEY="", GUNICORN_BIND=f"127.0.0.1:{free_port()}",
               GUNICORN_WORKERS="1")
    result = run(unit_command(env), env)
    assert "JWT_SECRET_KEY is not set" in result.stderr
    assert str(result.returncode) in prevent


def test_systemd_analyze_verify(tmp_path):
    tool = shutil.which("systemd-analyze")
    if not tool:
        pytest.skip("systemd-analyze is not installed")
    venv_bin = Path(sys.executable).parent
    unit = substitute(UNIT.read_text(), [(f"{INSTALL_DIR}/.venv/bin/", f"{venv_bin}/"),
                                         (INSTALL_DIR, str(ROOT))], UNIT)
    (tmp_path / "wxauth.service").write_text(unit)
    result = subprocess.run([tool, "verify", "--man=no", str(tmp_path / "wxauth.service")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "wxauth.service" not in result.stderr, result.stderr  # no warning about it either


def test_deploy_files_agree():
    """The site file, the unit and the EnvironmentFile template name the same gunicorn
    address, avatar folder and trusted proxy."""
    env = dict(line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()
               if line.strip() and not line.startswith("#"))
    site = SITE.read_text()
    upstream = re.search(r"upstream wxauth_gunicorn \{\s*server ([^;\s]+);", site).group(1)
    assert env["GUNICORN_BIND"] == upstream
    assert upstream.split(":")[0] in env["TRUSTED_PROXIES"].split(",")
    alias = re.search(r"location /media/ \{\s*alias ([^;\s]+);", site).group(1)
    unit_env = dict(item.split("=", 1)
                    for item in shlex.split(unit_sections()["Service"]["Environment"][-1]))
    assert alias == env["MEDIA_ROOT"] + "/" == unit_env["MEDIA_ROOT"] + "/"
    assert "FLASK_DEBUG" not in env
    # nginx's body limits are the app's (default settings)
    from config import Config
    server_limit = re.search(r"^    client_max_body_size (\d+)k;", site, re.M).group(1)
    assert int(server_limit) * 1024 == Config.MAX_CONTENT_LENGTH
    avatar_limit = re.search(r"location = /profile/avatar \{\s*client_max_body_size (\d+)k;",
                             site).group(1)
    assert int(avatar_limit) * 1024 == Config.AVATAR_MAX_BYTES + 16 * 1024  # (web/profile.py)

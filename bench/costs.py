"""Where a request's CPU time goes: wxauth's requests and their parts, in one process.

`bench/run.py` measures throughput under gunicorn; this prints the CPU time (µs, user +
system, `time.process_time`) of each piece alone, no server and no load, so the ratios in the
README can be read against them:

- a request to the bare Flask endpoint and to wxauth (GET /profile, a refresh, POST
  /profile, a returning and a first login), through the WSGI app in this process;
- the parts of a login and of an authenticated request: the code2Session call (urllib3 to the
  stand-in on loopback), the user query with and without its session_key, the two JWTs of a
  login, reading a token's header, the access-log line, the login answer's serialization;
- what each layer costs inside a real request: the request again with that layer taken out
  (the WeChat call answered in process, the database work skipped, no login-log and session
  rows, no access line, no refresh token, no rate-limit check). A part timed alone runs with warm caches and reads low: the
  access line costs about five times more inside a request than alone.

    .venv/bin/python bench/costs.py [--count 3000]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import json
import logging
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from run import APPID, Processes, free_port, server_env, start_redis  # noqa: E402
from standin import openid_for, session_key_for  # noqa: E402

# the request hooks of wxauth.web.logs (the request id and the access line)
LOG_HOOKS = ("_start_request", "_log_request")


ISSUER = "http://127.0.0.1"  # the tokens' iss (the request's URL root in the server)


def cost(count: int, fn) -> float:
    """CPU µs per call of `fn` (after a warm-up of a tenth of `count`)."""
    for i in range(max(1, count // 10)):
        fn(i)
    started = time.process_time()
    for i in range(count):
        fn(i)
    return 1e6 * (time.process_time() - started) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000, help="calls per measurement")
    parser.add_argument("--redis", help="REDIS_URL to use ('none': the in-process store); "
                                        "default: a private redis-server")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="wxauth-costs-"))
    port = free_port()
    standin = f"http://127.0.0.1:{port}"
    procs = Processes(tmp)
    try:
        redis_url = start_redis(procs, tmp, args.redis)
        # the settings before anything imports wxauth (config reads the environment on import)
        os.environ.update(server_env(standin, f"sqlite:///{tmp / 'costs.db'}", tmp / "instance",
                                     redis_url))
        procs.start("standin", [sys.executable, str(ROOT / "bench" / "standin.py"), str(port)],
                    dict(os.environ), standin + "/stats")
        subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
                       cwd=ROOT, check=True, capture_output=True)
        print_costs(args.count)
    finally:
        procs.stop()


def print_costs(count: int) -> None:
    import jwt as pyjwt
    import limits
    from werkzeug.test import EnvironBuilder, run_wsgi_app

    from bare import app as bare_app
    from wsgi import app
    from wxauth.services import login, login_log, programs, sessions
    from wxauth.infra import ratelimit
    from wxauth.extensions import db
    from wxauth.web.logs import access_log
    from wxauth.web.schemas import LoginResultSchema
    from wxauth.wechat.client import Code2SessionResult
    from wxauth.wechat.crypto import encrypt

    # the access line goes where a worker's goes (stderr), here to /dev/null
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(os.devnull, "w"))

    def request(wsgi_app, method, path, **kwargs):
        environ = EnvironBuilder(method=method, path=path, **kwargs).get_environ()
        body, status, _ = run_wsgi_app(wsgi_app, environ)
        b"".join(body)
        if not status.startswith("200"):
            raise SystemExit(f"{method} {path}: {status}")

    client = app.test_client()
    openid = "obench-profile"
    token = client.post("/auth/login", json={"code": f"{openid}.1"}).json["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    data = {"nickName": "Bench", "gender": 1, "city": "Shenzhen", "language": "zh_CN",
            "watermark": {"appid": APPID, "timestamp": int(time.time())}}
    encrypted, iv = encrypt(session_key_for(openid), data)
    body = {"encryptedData": base64.b64encode(encrypted).decode(),
            "iv": base64.b64encode(iv).decode()}
    run_tag = secrets.token_hex(4)
    first_logins = itertools.count()  # every code a new openid, warm-up included

    def returning_login(i):
        request(app, "POST", "/auth/login", json={"code": f"oret{i % 500}.{run_tag}_{i}"})

    def first_login(i):
        request(app, "POST", "/auth/login",
                json={"code": f"onew{run_tag}_{next(first_logins)}.1"})

    def get_profile(i):
        request(app, "GET", "/profile", headers=auth)

    chain = [client.post("/auth/login", json={"code": "obench-refresh.1"}).json["refresh_token"]]

    def refresh(i):  # each refresh token works once: the next call uses the new one
        environ = EnvironBuilder(method="POST", path="/auth/refresh", headers={
            "Authorization": f"Bearer {chain[0]}"}).get_environ()
        body, status, _ = run_wsgi_app(app, environ)
        if not status.startswith("200"):
            raise SystemExit(f"POST /auth/refresh: {status}")
        chain[0] = json.loads(b"".join(body))["refresh_token"]

    rows = [
        ("bare Flask JSON endpoint (the reference)",
         cost(count, lambda i: request(bare_app, "GET", "/json"))),
        ("GET /profile", cost(count, get_profile)),
        ("POST /auth/refresh (rotation)", cost(count, refresh)),
        ("POST /profile (encryptedData, unchanged data)",
         cost(count, lambda i: request(app, "POST", "/profile", headers=auth, json=body))),
        ("POST /auth/login, returning user (pool of 500)", cost(count, returning_login)),
        ("POST /auth/login, new user", cost(count, first_login)),
    ]
    parts = []
    with app.test_request_context("/auth/login", method="POST"):
        program = programs.get(None)
        parts.append(("code2Session call (urllib3, pooled, loopback stand-in)",
                      cost(count, lambda i: program.client.code2session(f"oret{i}.{run_tag}"))))
        user = login.find_user(APPID, openid)

        def query(with_session_key: bool) -> None:  # in a new session, as a request
            login.find_user(APPID, openid, with_session_key=with_session_key)
            db.session.remove()

        parts.append(("user query, session included (ORM SELECT by appid + openid)",
                      cost(count, lambda i: query(False))))
        parts.append(("the same with the session_key (+ Fernet decryption)",
                      cost(count, lambda i: query(True))))
        parts.append((f"a login's access + refresh token ({app.config['JWT_ALGORITHM']}, "
                       "flask-jwt-extended)",
                      cost(count, lambda i: sessions.issue(user, "f" * 32, "j" * 32, ISSUER))))
        parts.append(("a token's header read (flask-jwt-extended, every request)",
                      cost(count, lambda i: pyjwt.get_unverified_header(token))))
        answer = {**sessions.issue(user, "f" * 32, "j" * 32, ISSUER), "is_new_user": False, "is_new_account": False,
                  "user": user}
        schema = LoginResultSchema()
        parts.append(("the login answer's serialization (marshmallow + JSON)",
                      cost(count, lambda i: json.dumps(schema.dump(answer)))))
        parts.append(("the access-log line", cost(count, lambda i: access_log.info(
            "%s %s %s %.1fms", "GET", "/profile", 200, 1.0, extra={
                "method": "GET", "path": "/profile", "status": 200, "duration_ms": 1.0,
                "remote_addr": "127.0.0.1"}))))

    logged_in = login.LoginResult(user, False, None, False)  # the parts' user and program
    window = ratelimit.Window(limits.parse("1/second"), 1, time.time())
    allowed = ratelimit.Verdict(True, window, [])  # a hit allowed, nothing to write

    def answer_code(code: str) -> Code2SessionResult:  # what the stand-in answers, no HTTP
        openid = openid_for(code)
        return Code2SessionResult(openid, session_key_for(openid))

    def without_hooks(hooks: dict) -> dict:
        kept = {key: [f for f in funcs if f.__name__ not in LOG_HOOKS]
                for key, funcs in hooks.items()}
        if sum(map(len, kept.values())) != sum(map(len, hooks.values())) - 1:
            raise SystemExit(f"wxauth.web.logs' request hooks {LOG_HOOKS} not found")
        return kept

    layers = {  # a layer taken out: the patches that skip it
        "the WeChat call (code2Session over HTTP)":
            lambda: [mock.patch.object(program.client, "code2session", answer_code)],
        "the database work of a login (services.login)":
            lambda: [mock.patch.object(login, "login",
                                       lambda appid, session, record=None: logged_in)],
        "the login-log and session rows":
            lambda: [mock.patch.object(login_log, "add_success", lambda *args: None),
                     mock.patch.object(sessions, "start_session", lambda *args: [])],
        "the request id and access line (wxauth.web.logs)":
            lambda: [mock.patch.dict(app.before_request_funcs,
                                     without_hooks(app.before_request_funcs)),
                     mock.patch.dict(app.after_request_funcs,
                                     without_hooks(app.after_request_funcs))],
        "the refresh token":
            lambda: [mock.patch.object(sessions, "create_refresh_token", lambda **kw: "-")],
        "the rate-limit check":
            lambda: [mock.patch.object(ratelimit.RateLimit, "hit", lambda self, *args: allowed)],
    }
    each = list(layers.values())
    layers["all of the above"] = lambda: [patch for make in each for patch in make()]
    requests_ = {"returning login": returning_login, "first login": first_login,
                 "GET /profile": get_profile}
    applies = {"GET /profile": ("the request id and access line (wxauth.web.logs)",)}
    # whole and layer-less requests alternate (the machine drifts, a first login's cost grows
    # with the table) in short rounds; the medians of seven rounds are printed
    rounds, each_count = 7, max(1, count // 10)
    wholes, saved = {name: [] for name in requests_}, {}
    for layer, patches in layers.items():
        for name, fn in requests_.items():
            if name in applies and layer not in applies[name]:
                continue
            differences = []
            for _ in range(rounds):
                whole = cost(each_count, fn)
                with contextlib.ExitStack() as stack:
                    for patch in patches():
                        stack.enter_context(patch)
                    differences.append(whole - cost(each_count, fn))
                wholes[name].append(whole)
            saved[layer, name] = statistics.median(differences)

    print(f"\nCPU time per call, one process, no load ({count} calls each; µs)\n")
    for title, value in rows:
        print(f"{title:58} {value:7.0f}")
    print("\nparts of those requests:\n")
    for title, value in parts:
        print(f"{title:58} {value:7.0f}")
    print("\nwhat a layer costs inside a real request: the request's CPU time minus the same "
          "request's\nwith the layer taken out (µs, medians of 7 rounds):\n")
    print(f"{'':50}" + "".join(f"{name:>17}" for name in requests_))
    print(f"{'the whole request':50}" + "".join(f"{statistics.median(wholes[name]):17.0f}"
                                                 for name in requests_))
    for layer in layers:
        print(f"{layer:50}" + "".join(
            f"{saved[layer, name]:17.0f}" if (layer, name) in saved else f"{'-':>17}"
            for name in requests_))
    print("\nUnder gunicorn (bench/run.py) every request also pays the sync worker's accept, "
          "HTTP parsing\nand connection close, and the kernel's TCP work: the bare "
          "endpoint's 'bare us' there minus its\nfigure here.")


if __name__ == "__main__":
    main()

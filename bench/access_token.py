"""Benchmark: how many access_token fetches do 1,000 phone-number calls cost?

Starts on loopback: the WeChat emulator (standalone process), two wxauth instances (gunicorn,
2 workers each: 4 workers) sharing one SQLite file and one Redis, logs a user in, then sends
1,000 ``POST /profile/phone`` calls (16 at a time, alternating instances) and asks the
emulator how many tokens were fetched. With the shared cache and lock the answer is 1; with
per-process caches it would be one per worker at least (and, with the classic token API,
40001 storms on top).

    .venv/bin/python bench/access_token.py [--calls 1000] [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from run import free_port  # noqa: E402


def wait_for(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"process for {url} exited with {proc.returncode}")
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="wxauth-bench-"))
    appid, secret = "wxbe0c000000000000", secrets.token_hex(16)
    emulator_port = free_port()
    env = {**os.environ, "FLASK_DEBUG": "0", "WECHAT_APPID": appid, "WECHAT_SECRET": secret,
           "WECHAT_API_BASE": f"http://127.0.0.1:{emulator_port}",
           "DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}",
           "JWT_SECRET_KEY": secrets.token_urlsafe(48), "SECRET_KEY": secrets.token_urlsafe(48),
           "SESSION_KEY_ENCRYPTION_KEY": Fernet.generate_key().decode(),
           "ERASURE_KEY": secrets.token_urlsafe(48),
           "REDIS_URL": args.redis, "REDIS_PREFIX": f"wxauth-bench:{secrets.token_hex(4)}:",
           "LOGIN_RATE_LIMIT": "100000 per minute", "WXAUTH_INSTANCE_PATH": str(tmp / "instance"),
           "LOG_LEVEL": "WARNING"}
    python = sys.executable
    procs: list[subprocess.Popen] = []
    log = open(tmp / "bench.log", "w")

    def start(cmd: list[str]) -> subprocess.Popen:
        proc = subprocess.Popen([python, "-m", *cmd], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(proc)
        return proc

    try:
        subprocess.run([python, "-m", "flask", "--app", "wsgi", "db", "upgrade"], cwd=ROOT,
                       env=env, check=True, capture_output=True)
        emulator_url = env["WECHAT_API_BASE"]
        wait_for(emulator_url + "/dev/stats",
                 start(["flask", "--app", "wsgi", "wechat", "emulator", "--port",
                        str(emulator_port)]))
        instances = []
        for _ in range(2):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            wait_for(url + "/healthz", start(["gunicorn", "-w", "2", "--threads", "4", "-b",
                                              f"127.0.0.1:{port}", "wsgi:app"]))
            instances.append(url)

        code = requests.post(emulator_url + "/dev/code", json={"openid": "o-bench"},
                             timeout=10).json()["code"]
        token = requests.post(instances[0] + "/auth/login", json={"code": code},
                              timeout=10).json()["access_token"]
        phone_codes = [requests.post(emulator_url + "/dev/phone-code", json={
            "openid": "o-bench", "phone": f"138{i:08d}"}, timeout=10).json()["code"]
            for i in range(args.calls)]
        before = requests.get(emulator_url + "/dev/stats", timeout=10).json()

        def call(i: int) -> int:
            return requests.post(instances[i % 2] + "/profile/phone", timeout=30,
                                 json={"code": phone_codes[i]},
                                 headers={"Authorization": f"Bearer {token}"}).status_code

        started = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            statuses = list(pool.map(call, range(args.calls)))
        elapsed = time.perf_counter() - started
        after = requests.get(emulator_url + "/dev/stats", timeout=10).json()
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=15)

    fetches = (after["stable_token_fetches"] - before["stable_token_fetches"]
               + after["token_fetches"] - before["token_fetches"])
    ok = statuses.count(200)
    print("instances x workers        2 x 2 (gunicorn, shared Redis, shared SQLite)")
    print(f"phone-number calls         {args.calls} ({ok} x 200, "
          f"{args.calls - ok} other) in {elapsed:.1f} s, {args.calls / elapsed:.0f}/s")
    print(f"access_token fetches       {fetches}")
    print(f"WeChat API calls           {after['api_calls'] - before['api_calls']}")


if __name__ == "__main__":
    main()

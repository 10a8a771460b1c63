"""The login-path benchmark (`make bench`): wxauth against a bare Flask endpoint, same gunicorn.

Starts on loopback a fast WeChat stand-in (bench/standin.py), a private Redis (the production
configuration: revocations, rate-limit counters and the access_token live there), wxauth
under gunicorn (the shipped gunicorn.conf.py, N sync workers) on SQLite (and PostgreSQL with
--postgres URL), and a bare Flask JSON endpoint
(bench/bare.py) under the same gunicorn; drives them with wrk, alternating reference and
scenario (--repeat times: this machine's speed drifts, so medians are printed), and prints
requests/s, p50/p99 latency, errors and the ratio to the bare endpoint:

- POST /auth/login, new users (every code a new openid) and returning users (a pool of 500);
- GET /profile with a valid token; POST /profile with a valid encryptedData;

plus TCP connections opened to the stand-in per 1,000 logins, peak RSS per worker, and the
CPU time (user + system) the workers spent per request, for wxauth and for the bare endpoint.

    .venv/bin/python bench/run.py [--workers 2] [--duration 8] [--repeat 3] [--connections 16]
                                   [--postgres postgresql+psycopg://postgres@127.0.0.1/test]
                                   [--redis redis://…/0 | --redis none]

Without --redis a private ``redis-server`` is started (Debian's package redis-server); with
``--redis none``, or when there is none, the in-process store is measured and the table says so.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from standin import session_key_for  # noqa: E402

APPID = "wxbench0000000000"
# wrk gives every thread its own Lua state with the same unseeded math.random: codes are
# made unique with the thread's number (setup) and a per-run tag instead.
LOGIN_LUA = """
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local n = 0
request = function()
  n = n + 1
  local code = string.format(%s)
  return wrk.format("POST", "/auth/login", {["Content-Type"] = "application/json"},
                    '{"code": "' .. code .. '"}')
end
"""
LUA = {
    "bare": "",
    # the stand-in's openid is the code up to the dot: every code a new user…
    "login_new": LOGIN_LUA % '"onew%(run)s_%%d_%%d.1", tid, n',
    # …or one of 500
    "login_returning": LOGIN_LUA % '"oret%%d.%(run)s_%%d_%%d", math.random(1, 500), tid, n',
    "profile_get": """
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer %(token)s"
""",
    "profile_post": """
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer %(token)s"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '%(body)s'
""",
}
SCENARIOS = [("POST /auth/login (new users)", "login_new", "/auth/login"),
             ("POST /auth/login (returning, pool of 500)", "login_returning", "/auth/login"),
             ("GET /profile", "profile_get", "/profile"),
             ("POST /profile (encryptedData)", "profile_post", "/profile")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    def __init__(self, log_dir: Path):
        self.procs: list[subprocess.Popen] = []
        self.log_dir = log_dir

    def start(self, name: str, args: list[str], env: dict, ready_url: str) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "w")
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append(proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited; see {log.name}")
            try:
                requests.get(ready_url, timeout=2)
                return proc
            except requests.RequestException:
                time.sleep(0.2)
        raise SystemExit(f"{name} did not start; see {log.name}")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def worker_pids(master: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def peak_rss_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else 0.0


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far, in seconds (/proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def measure(url: str, script: str, args, tmp: Path, pids: list[int]) -> dict:
    """One wrk run; adds the CPU the server processes `pids` spent per request (µs)."""
    before = cpu_seconds(pids)
    result = wrk(url, script, args.duration, args.connections, tmp)
    result["cpu_us"] = 1e6 * (cpu_seconds(pids) - before) / max(1, result["requests"])
    return result


def parse_wrk(output: str) -> dict:
    def latency(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if not match:
            return float("nan")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    total = int(re.search(r"(\d+) requests in", output).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                              output)
    errors = int(non2xx.group(1)) if non2xx else 0
    if socket_errors:
        errors += sum(int(x) for x in socket_errors.groups())
    return {"rps": rps, "p50": latency("50"), "p99": latency("99"), "errors": errors,
            "requests": total}


def wrk(url: str, script: str, duration: int, connections: int, tmp: Path) -> dict:
    lua = tmp / f"script-{secrets.token_hex(4)}.lua"
    lua.write_text(script)
    out = subprocess.run(["wrk", "-t", "2", "-c", str(connections), "-d", f"{duration}s",
                          "--latency", "-s", str(lua), url], capture_output=True, text=True,
                         check=True).stdout
    return parse_wrk(out)


def prepare_user(base: str) -> tuple[str, str]:
    """Log a bench user in; return (access token, POST /profile body with valid data)."""
    from wxauth.wechat.crypto import encrypt  # (wxauth's config reads the environment)

    openid = "obench-profile"
    login = requests.post(base + "/auth/login", json={"code": f"{openid}.1"}, timeout=10)
    login.raise_for_status()
    data = {"nickName": "Bench", "gender": 1, "city": "Shenzhen", "language": "zh_CN",
            "watermark": {"appid": APPID, "timestamp": int(time.time())}}
    encrypted, iv = encrypt(session_key_for(openid), data)
    body = json.dumps({"encryptedData": base64.b64encode(encrypted).decode(),
                       "iv": base64.b64encode(iv).decode()})
    return login.json()["access_token"], body


def count_users(database_url: str, prefix: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT count(*) FROM users WHERE openid LIKE :p"),
                                      {"p": prefix + "%"}).scalar_one()
    finally:
        engine.dispose()


def start_redis(procs: Processes, tmp: Path, choice: str | None) -> str:
    """The REDIS_URL to measure with: `choice` (a URL; "none": ""), else a private
    redis-server started here ("" when the machine has none)."""
    if choice:
        return "" if choice == "none" else choice
    if not shutil.which("redis-server"):
        return ""
    port = free_port()
    log = open(tmp / "redis.log", "w")
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    procs.procs.append(proc)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"redis-server did not start; see {log.name}")


def server_env(standin_url: str, database_url: str, instance_path: Path,
               redis_url: str = "") -> dict[str, str]:
    """wxauth's settings for a benchmark: the stand-in as WeChat, fresh keys, no rate limit
    in the way, Redis at `redis_url` ("" = the in-process store)."""
    return {"FLASK_DEBUG": "0", "WECHAT_APPID": APPID, "WECHAT_SECRET": secrets.token_hex(16),
            "WECHAT_API_BASE": standin_url, "DATABASE_URL": database_url,
            "JWT_SECRET_KEY": secrets.token_urlsafe(48),
            "SESSION_KEY_ENCRYPTION_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "LOGIN_RATE_LIMIT": "100000000 per minute", "WECHAT_WATERMARK_MAX_AGE": "3600",
            "WXAUTH_INSTANCE_PATH": str(instance_path), "REDIS_URL": redis_url,
            "REDIS_PREFIX": f"wxauth-bench-{secrets.token_hex(4)}:",
            "PYTHONPATH": str(ROOT)}


def run_database(label: str, database_url: str, args, tmp: Path, procs: Processes,
                 standin_url: str, standin_pid: int, bare_url: str,
                 bare_master: int, redis_url: str) -> list[dict]:
    env = {**os.environ, **server_env(standin_url, database_url, tmp / f"instance-{label}",
                                      redis_url)}
    subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"], cwd=ROOT,
                   env=env, check=True, capture_output=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    master = procs.start(f"wxauth-{label}", [sys.executable, "-m", "gunicorn",
                                             "-c", str(ROOT / "gunicorn.conf.py"),
                                             "-w", str(args.workers), "--threads", "1",
                                             "-b", f"127.0.0.1:{port}", "wsgi:app"],
                         env, base + "/healthz")
    token, body = prepare_user(base)
    workers, bare_workers = worker_pids(master.pid), worker_pids(bare_master)
    rows = []
    for title, key, path in SCENARIOS:
        runs, opened = [], 0
        for _ in range(args.repeat):  # reference and scenario alternate; medians are reported
            bare = measure(bare_url + "/json", LUA["bare"], args, tmp, bare_workers)
            before = requests.get(standin_url + "/stats", timeout=5).json()
            script = LUA[key] % {"token": token, "body": body, "run": secrets.token_hex(4)}
            standin_cpu = cpu_seconds([standin_pid])
            result = measure(base + path, script, args, tmp, workers)
            result["standin_us"] = (1e6 * (cpu_seconds([standin_pid]) - standin_cpu)
                                    / max(1, result["requests"]))
            after = requests.get(standin_url + "/stats", timeout=5).json()
            opened += after["connections"] - before["connections"]
            runs.append({**result, "bare": bare["rps"], "ratio": result["rps"] / bare["rps"],
                         "bare_cpu_us": bare["cpu_us"]})
        row = {name: statistics.median(run[name] for run in runs)
               for name in ("rps", "p50", "p99", "bare", "ratio", "cpu_us", "bare_cpu_us",
                            "standin_us")}
        row.update(title=f"{title} [{label}]", errors=sum(run["errors"] for run in runs),
                   requests=sum(run["requests"] for run in runs))
        if key.startswith("login"):
            row["conns_per_1000"] = 1000 * opened / max(1, row["requests"])
        if key == "login_new":  # every one of those logins really was a first login
            row["note"] = (f"{count_users(database_url, 'onew')} users created; wrk counted "
                           f"{row['requests']} answers (requests in flight at the end of a "
                           "run are not counted)")
        rows.append(row)
    rss = [peak_rss_mb(pid) for pid in worker_pids(master.pid)]
    for row in rows:
        row["rss"] = max(rss) if rss else float("nan")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="wxauth login-path benchmark")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=int, default=8, help="seconds per measurement")
    parser.add_argument("--repeat", type=int, default=3,
                        help="alternations of reference and scenario per scenario (medians)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--postgres", help="also run on this PostgreSQL URL (a scratch schema)")
    parser.add_argument("--redis", help="REDIS_URL to use ('none': the in-process store); "
                                        "default: a private redis-server")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk (make bench does it)")

    tmp = Path(tempfile.mkdtemp(prefix="wxauth-bench-"))
    procs = Processes(tmp)
    try:
        standin_port = free_port()
        standin_url = f"http://127.0.0.1:{standin_port}"
        standin = procs.start("standin", [sys.executable, str(ROOT / "bench" / "standin.py"),
                                          str(standin_port)], dict(os.environ),
                              standin_url + "/stats")
        redis_url = start_redis(procs, tmp, args.redis)
        bare_port = free_port()
        bare_url = f"http://127.0.0.1:{bare_port}"
        bare = procs.start("bare", [sys.executable, "-m", "gunicorn", "-c", "/dev/null",
                                    "-w", str(args.workers), "--threads", "1",
                                    "-b", f"127.0.0.1:{bare_port}", "bench.bare:app"],
                           dict(os.environ), bare_url + "/json")
        rows = run_database("sqlite", f"sqlite:///{tmp / 'bench.db'}", args, tmp, procs,
                            standin_url, standin.pid, bare_url, bare.pid, redis_url)
        if args.postgres:
            rows += run_database("postgresql", args.postgres, args, tmp, procs, standin_url,
                                 standin.pid, bare_url, bare.pid, redis_url)
    finally:
        procs.stop()

    print(f"\nwxauth benchmark: gunicorn -w {args.workers} (sync), wrk -c {args.connections}, "
          f"{args.duration} s per run, medians of {args.repeat} alternations, "
          f"{os.cpu_count()} CPUs, "
          f"{'Redis ' + redis_url if redis_url else 'no Redis (in-process store)'}\n")
    header = (f"{'scenario':48} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
              f"{'bare/s':>7} {'ratio':>6} {'conn/1k':>7} {'RSS MB':>6} {'cpu us':>6} "
              f"{'bare us':>7}")
    print(header)
    print("-" * len(header))
    for r in rows:
        conns = f"{r['conns_per_1000']:.1f}" if "conns_per_1000" in r else "-"
        print(f"{r['title']:48} {r['rps']:8.0f} {r['p50']:7.2f} {r['p99']:7.2f} "
              f"{r['errors']:6d} {r['bare']:7.0f} {r['ratio']:6.2f} {conns:>7} {r['rss']:6.1f} "
              f"{r['cpu_us']:6.0f} {r['bare_cpu_us']:7.0f}")
    print("\ncpu us: CPU time (user + system) of the server's workers per request (median);"
          "\nbare us: the same for the bare endpoint. The WeChat stand-in, on the same cores, "
          "used per login:")
    for r in rows:
        if r["title"].startswith("POST /auth"):
            print(f"  {r['standin_us']:.0f} us  {r['title']}")
    for r in rows:
        if "note" in r:
            print(f"\n{r['title']}: {r['note']}")


if __name__ == "__main__":
    main()

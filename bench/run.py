"""The login-path benchmark (`make bench`): wxauth against a bare Flask endpoint under
gunicorn, then wxauth while WeChat answers slowly or not at all.

Starts on loopback a WeChat stand-in (bench/standin.py, its delay and stall settable), a
private Redis (the production configuration: revocations, rate-limit counters and the
access_token live there), wxauth under gunicorn with the shipped gunicorn.conf.py (its worker
class, gevent by default; -w N) on SQLite (and PostgreSQL with --postgres URL, in a scratch
database) and, for the table, a bare Flask JSON endpoint (bench/bare.py) under the same
gunicorn.conf.py. It drives them with wrk, alternating reference and scenario (--repeat times:
this machine's speed drifts, so medians are printed), and prints two tables.

The table: requests/s, p50/p99 latency, errors and the ratio to the bare endpoint for

- POST /auth/login, new users (every code a new openid) and returning users (a pool of 500);
- GET /profile with a valid token (the per-request user and session query); GET
  /auth/verify with it (what a gateway's auth_request costs per request) and POST
  /oauth/introspect of it by a service client (HTTP Basic); POST
  /auth/refresh, each token used once (a chain per connection: every answer's refresh
  token is the connection's next); POST /profile with a valid encryptedData;

plus TCP connections opened to the stand-in per 1,000 logins, peak RSS per worker, and the
CPU time (user + system) the workers spent per request, for wxauth and for the bare endpoint.
Then what the login log costs: the logins again, alternating with the same app without a
login's login-log and session rows (bench/without_login_log.py) on the same database; and
what the signing algorithm costs: the logins on a server each for ES256 (the default), HS256
and RS256 (SQLite only).
Last, the database statements a flood of refused logins costs (bench/refused.py, per 10,000
refusals).

The latency scenario, on a wxauth server of its own (WECHAT_TIMEOUT and WECHAT_DEADLINE
--wechat-timeout, 30 s): logins (new users, returning users) with --latency-connections (256)
while the stand-in answers after --wechat-delay ms (100), each beside the same server's
zero-delay throughput at the same connections (the reference, alternating with it); a burst
of --burst-connections (1,024) returning logins at --burst-delay ms (300), with the peak RSS
per worker; and GET /profile (--profile-connections, 8) while the stand-in stalls with
--latency-connections logins pending. Each row: requests/s, p50/p99, errors (non-2xx answers
and socket errors), the ratio to the zero-delay reference, the targets and whether they hold.

    .venv/bin/python bench/run.py [--workers 2] [--duration 8] [--repeat 3] [--connections 16]
                                   [--postgres postgresql+psycopg://postgres@127.0.0.1/test]
                                   [--redis redis://…/0 | --redis none] [--only table|latency|algorithms]
                                   [--rows /auth/verify,login_new]
                                   [--refused-logins 10000]
                                   [--wechat-delay 100] [--latency-connections 256]
                                   [--burst-delay 300] [--burst-connections 1024]

Without --redis a private ``redis-server`` is started (Debian's package redis-server); with
``--redis none``, or when there is none, the in-process store is measured and the table says so.
With --rows the table has only those rows (paths or the scenarios' keys: login_new,
login_returning, profile_get, introspect, refresh, profile_post), without the login log's,
the algorithms' and the refused logins' comparisons: a quick before/after of one request.
The servers' logs stay in the temporary folder the last line names.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from standin import session_key_for  # noqa: E402

APPID = "wxbe0c000000000000"
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
    "introspect": """
wrk.method = "POST"
wrk.headers["Authorization"] = "Basic %(basic)s"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "token=%(token)s"
""",
    # each refresh token works once: a pool of the thread's tokens, a request takes one, a 200
    # gives back its new one (at most one request per connection is in flight)
    "refresh": """
local threads = 0
local all = {%(tokens)s}
local per = %(per)d
function setup(thread)
  threads = threads + 1
  thread:set("initial", table.concat(all, ",", (threads - 1) * per + 1, threads * per))
end
local pool = nil
request = function()
  if pool == nil then
    pool = {}
    for t in string.gmatch(initial, "[^,]+") do table.insert(pool, t) end
  end
  local token = table.remove(pool) or "none"
  return wrk.format("POST", "/auth/refresh", {["Authorization"] = "Bearer " .. token})
end
response = function(status, headers, body)
  if status == 200 then
    local token = string.match(body, '"refresh_token"%%s*:%%s*"([^"]+)"')
    if token then table.insert(pool, token) end
  end
end
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
             ("GET /auth/verify (nginx auth_request)", "profile_get", "/auth/verify"),
             ("POST /oauth/introspect (service client)", "introspect", "/oauth/introspect"),
             ("POST /auth/refresh (rotation)", "refresh", "/auth/refresh"),
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

    def stop_one(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

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


def host_busy() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs so far (/proc/stat; idle and iowait are idle)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    return total - fields[3] - fields[4], total


def measure(url: str, script: str, args, tmp: Path, pids: list[int],
            connections: int | None = None, timeout: float | None = None,
            own: list[int] = ()) -> dict:
    """One wrk run; adds the CPU the server processes `pids` spent per request (µs), how
    busy the machine's CPUs were meanwhile (host, %: every process) and how much of that
    was none of this benchmark's (other, %: neither `pids`, `own`, wrk nor this script)."""
    before, busy = cpu_seconds(pids), host_busy()
    own_before, children = cpu_seconds(list(own)), resource.getrusage(resource.RUSAGE_CHILDREN)
    self_before = time.process_time()
    result = wrk(url, script, args.duration, connections or args.connections, tmp, timeout)
    spent = cpu_seconds(pids) - before
    result["cpu_us"] = 1e6 * spent / max(1, result["requests"])
    after, done = host_busy(), resource.getrusage(resource.RUSAGE_CHILDREN)
    capacity = max(1, after[1] - busy[1]) / os.sysconf("SC_CLK_TCK")  # CPU-seconds
    result["host"] = 100 * (after[0] - busy[0]) / max(1, after[1] - busy[1])
    ours = (spent + cpu_seconds(list(own)) - own_before + time.process_time() - self_before
            + done.ru_utime + done.ru_stime - children.ru_utime - children.ru_stime)
    result["other"] = max(0.0, result["host"] - 100 * ours / capacity)
    return result


class AcceptWatch:
    """Samples a listening socket's accept queue (/proc/net/tcp) while a run goes on: the
    most connections waiting to be accepted at once, and how long after the start the
    last one still waited (its first request waited with it, in wrk's latency)."""

    def __init__(self, port: int, interval: float = 0.1):
        self.pattern = re.compile(rf"^\s*\d+: 0100007F:{port:04X} 00000000:0000 0A "
                                  r"[0-9A-F]+:([0-9A-F]+)", re.M)
        self.interval = interval
        self.most, self.last = 0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(self.interval):
            try:
                match = self.pattern.search(Path("/proc/net/tcp").read_text())
            except OSError:
                return
            waiting = int(match.group(1), 16) if match else 0
            if waiting:
                self.most = max(self.most, waiting)
                self.last = time.monotonic() - started

    def __enter__(self) -> AcceptWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def settle(pids: list[int], limit: float = 30.0) -> float:
    """Wait (up to `limit` s) until the processes `pids` are idle (under a tenth of a core
    over half a second): a run's abandoned requests are not the next run's load."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        before = cpu_seconds(pids)
        time.sleep(0.5)
        if cpu_seconds(pids) - before < 0.05:
            break
    return time.monotonic() - started


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
            "requests": total, "non2xx": int(non2xx.group(1)) if non2xx else 0}


def wrk_args(url: str, script: str, duration: float, connections: int, tmp: Path,
             timeout: float | None = None) -> list[str]:
    lua = tmp / f"script-{secrets.token_hex(4)}.lua"
    lua.write_text(script)
    extra = ["--timeout", f"{timeout:g}s"] if timeout else []  # (wrk's default: 2 s)
    return ["wrk", "-t", "2", "-c", str(connections), "-d", f"{duration:g}s", "--latency",
            *extra, "-s", str(lua), url]


def wrk(url: str, script: str, duration: float, connections: int, tmp: Path,
        timeout: float | None = None) -> dict:
    """One wrk run. A request unanswered after `timeout` (wrk's default 2 s) counts as a
    socket timeout, an error, and is left out of the latency percentiles."""
    out = subprocess.run(wrk_args(url, script, duration, connections, tmp, timeout),
                         capture_output=True, text=True, check=True).stdout
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


def service_client(env: dict) -> str:
    """A service client with scope introspect (`flask clients add`), as the Basic
    credentials of its requests (base64 of ``client_id:secret``)."""
    added = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "clients", "add",
                            f"bench-{secrets.token_hex(4)}", "--scope", "introspect"],
                           cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    fields = dict(line.split(None, 1) for line in added.stdout.splitlines()
                  if line.startswith(("client_id ", "secret ")))
    return base64.b64encode(f"{fields['client_id']}:{fields['secret']}".encode()).decode()


def refresh_tokens(base: str, key: str, connections: int) -> dict:
    """For the refresh scenario (`key` "refresh"): two refresh tokens per connection (wrk
    may ask a connection's first request before an answer gives a token back), each of a
    login of its own (wrk's 2 threads take half each): ``{"tokens", "per"}``."""
    if key != "refresh":
        return {}
    tokens = []
    for _ in range(2 * connections):
        login = requests.post(base + "/auth/login", timeout=10,
                              json={"code": f"obench-refresh-{secrets.token_hex(4)}.1"})
        login.raise_for_status()
        tokens.append(login.json()["refresh_token"])
    return {"tokens": ", ".join(f'"{t}"' for t in tokens), "per": connections}


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
            "JWT_SECRET_KEY": secrets.token_urlsafe(48), "SECRET_KEY": secrets.token_urlsafe(48),
            "SESSION_KEY_ENCRYPTION_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "ERASURE_KEY": secrets.token_urlsafe(48),
            "LOGIN_RATE_LIMIT": "100000000 per minute", "WECHAT_WATERMARK_MAX_AGE": "3600",
            "WXAUTH_INSTANCE_PATH": str(instance_path), "REDIS_URL": redis_url,
            "REDIS_PREFIX": f"wxauth-bench-{secrets.token_hex(4)}:",
            "PYTHONPATH": str(ROOT)}


def start_wxauth(name: str, env: dict, args, procs: Processes,
                 target: str = "wsgi:app") -> tuple[subprocess.Popen, str]:
    """Migrate, then start wxauth (gunicorn's `target`) under gunicorn with the shipped
    gunicorn.conf.py (its worker class: gevent unless GUNICORN_WORKER_CLASS says otherwise);
    (master, base URL)."""
    subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"], cwd=ROOT,
                   env=env, check=True, capture_output=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    master = procs.start(name, [sys.executable, "-m", "gunicorn",
                                "-c", str(ROOT / "gunicorn.conf.py"),
                                "-w", str(args.workers), "--threads", "1",
                                "-b", f"127.0.0.1:{port}", target],
                         env, base + "/healthz")
    return master, base


def run_database(label: str, database_url: str, args, tmp: Path, procs: Processes,
                 standin_url: str, standin_pid: int, bare_url: str,
                 bare_master: int, redis_url: str) -> list[dict]:
    env = {**os.environ, **server_env(standin_url, database_url, tmp / f"instance-{label}",
                                      redis_url)}
    master, base = start_wxauth(f"wxauth-{label}", env, args, procs)
    token, body = prepare_user(base)
    basic = service_client(env)
    workers, bare_workers = worker_pids(master.pid), worker_pids(bare_master)
    rows = []
    for title, key, path in SCENARIOS:
        if args.rows and key not in args.rows and path not in args.rows:
            continue
        runs, opened = [], 0
        for _ in range(args.repeat):  # reference and scenario alternate; medians are reported
            bare = measure(bare_url + "/json", LUA["bare"], args, tmp, bare_workers)
            before = requests.get(standin_url + "/stats", timeout=5).json()
            script = LUA[key] % {"token": token, "body": body, "run": secrets.token_hex(4),
                                 "basic": basic,
                                 **refresh_tokens(base, key, args.connections)}
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
    if args.rows:  # (only the rows asked for: none of what follows the table's rows)
        procs.stop_one(master)
        return rows
    rows += login_log_cost(label, env, args, tmp, procs, base, workers)
    procs.stop_one(master)
    if label == "sqlite":
        rows += algorithm_cost(label, env, args, tmp, procs)
    rows.append({"title": label, "refused": refused_statements(env, args.refused_logins)})
    return rows


def refused_statements(env: dict, logins: int) -> dict:
    """bench/refused.py on the (migrated) database of `env`: the database statements of
    `logins` refused logins."""
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "refused.py"), str(logins)],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


def alternating_logins(servers: dict[str, tuple[str, list[int]]], args, tmp: Path,
                       warm: tuple[str, ...] = ()) -> list[tuple[str, dict[str, dict], int]]:
    """The logins (the first two SCENARIOS) on each of `servers` (name → (base URL, worker
    pids)), the `warm` ones warmed up first as the table warmed its server, then measured in
    turn, the order rotating each of --repeat rounds: (title, name → median ``{"rps",
    "cpu_us"}``, errors) per scenario."""
    names = list(servers)
    for _, key, path in SCENARIOS[:2]:
        for name in warm:
            wrk(servers[name][0] + path, LUA[key] % {"run": secrets.token_hex(4)},
                args.duration, args.connections, tmp)
    results = []
    for title, key, path in SCENARIOS[:2]:
        runs = []
        for i in range(args.repeat):
            order = names[i % len(names):] + names[:i % len(names)]
            runs.append({name: measure(servers[name][0] + path,
                                       LUA[key] % {"run": secrets.token_hex(4)}, args, tmp,
                                       servers[name][1]) for name in order})
        medians = {name: {field: statistics.median(run[name][field] for run in runs)
                          for field in ("rps", "cpu_us")} for name in names}
        results.append((title, medians, sum(run[name]["errors"] for run in runs
                                            for name in names)))
    return results


def login_log_cost(label: str, env: dict, args, tmp: Path, procs: Processes, base: str,
                   workers: list[int]) -> list[dict]:
    """The logins with the login log (the server `base`) and without it (a second server on
    the same database: bench/without_login_log.py), alternating; medians."""
    master, without_base = start_wxauth(f"wxauth-{label}-without-login-log", env, args,
                                        procs, "bench.without_login_log:app")
    servers = {"without": (without_base, worker_pids(master.pid)), "with": (base, workers)}
    rows = [{"rps": medians["with"]["rps"], "cpu_us": medians["with"]["cpu_us"],
             "rps_without": medians["without"]["rps"],
             "cpu_us_without": medians["without"]["cpu_us"],
             "title": f"{title} [{label}]", "login_log": True, "errors": errors}
            for title, medians, errors in alternating_logins(servers, args, tmp,
                                                             warm=("without",))]
    procs.stop_one(master)
    return rows


ALGORITHMS = ("ES256", "HS256", "RS256")  # JWT_ALGORITHM: the default, the old one, RSA


def algorithm_cost(label: str, env: dict, args, tmp: Path, procs: Processes) -> list[dict]:
    """The logins signed with each of `ALGORITHMS`: a server per algorithm, each on a fresh
    SQLite database of its own (every server's new users land in a table of the same size),
    warmed up alike, measured alternating (`alternating_logins`); medians."""
    def start(algorithm: str) -> tuple[subprocess.Popen, str, list[int]]:
        server_env = dict(env, JWT_ALGORITHM=algorithm,
                          DATABASE_URL=f"sqlite:///{tmp / f'bench-{algorithm}.db'}")
        master, url = start_wxauth(f"wxauth-{label}-{algorithm}", server_env, args, procs)
        return master, url, worker_pids(master.pid)

    with concurrent.futures.ThreadPoolExecutor(len(ALGORITHMS)) as pool:  # (started at once)
        servers = dict(zip(ALGORITHMS, pool.map(start, ALGORITHMS)))
    try:
        measured = alternating_logins({name: (url, pids) for name, (_, url, pids)
                                       in servers.items()}, args, tmp, warm=ALGORITHMS)
        return [{"title": f"{title} [{label}]", "algorithms": True, "errors": errors, **medians}
                for title, medians, errors in measured]
    finally:
        for master, _, _ in servers.values():
            procs.stop_one(master)


# --- the latency scenario: WeChat answering slowly, or not at all -----------------------

# targets (the issue): ratio to the same server's zero-delay login throughput, errors,
# p99 (ms), peak RSS per worker (MB)
LATENCY_TARGET = {"ratio": 0.9, "p99": 1000.0}
BURST_TARGET = {"ratio": 0.8, "rss": 100.0}
STALL_TARGET = {"p99": 50.0}
LOGINS = {"login_new": "new users", "login_returning": "returning, pool of 500"}


class Standin:
    """The WeChat stand-in's control endpoint: its delay and stall, its counters."""

    def __init__(self, url: str):
        self.url = url

    def set(self, **change) -> dict:
        answer = requests.post(self.url + "/control", json=change, timeout=5)
        answer.raise_for_status()
        return answer.json()

    def stats(self) -> dict:
        return requests.get(self.url + "/stats", timeout=5).json()

    def drain(self, limit: float = 10.0) -> int:
        """Wait (up to `limit` s) until no request waits for its answer; those still waiting."""
        deadline = time.monotonic() + limit
        while (pending := self.stats()["pending"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        return pending


def raise_nofile(needed: int) -> int:
    """Raise this process's open-file limit (wrk and gunicorn, started from here, inherit
    it) to at least `needed` when the hard limit allows (or when root may raise it); the
    soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    for limits in ((needed, max(needed, hard)), (min(needed, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def nofile_of(pid: int) -> int:
    match = re.search(r"^Max open files\s+(\d+|unlimited)", Path(f"/proc/{pid}/limits")
                      .read_text(), re.M)
    return 1 << 30 if not match or match.group(1) == "unlimited" else int(match.group(1))


def latency_pairs(key: str, delay: float, connections: int, base: str,
                  args, tmp: Path, workers: list[int], standin: Standin,
                  own: list[int]) -> list[dict]:
    """Zero-delay and delayed logins at `connections`, alternating (--repeat times); the
    medians, as a reference row and a scenario row."""
    refs, runs = [], []
    for _ in range(args.repeat):
        for ms, into in ((0, refs), (delay, runs)):
            standin.set(delay_ms=ms, stall=False)
            standin.drain()  # the previous run's logins still in flight
            settle(workers)
            before = standin.stats()["connections"]
            script = LUA[key] % {"run": secrets.token_hex(4)}
            with AcceptWatch(int(base.rsplit(":", 1)[1])) as accept:
                result = measure(base + "/auth/login", script, args, tmp, workers,
                                 connections, args.wrk_timeout, own)
            result["accept_s"] = accept.last
            result["opened"] = standin.stats()["connections"] - before
            # logins, not answers: a quick 503 is no login
            result["rps"] *= 1 - result["non2xx"] / max(1, result["requests"])
            into.append(result)
    for run, ref in zip(runs, refs):
        run["ratio"] = run["rps"] / max(ref["rps"], 1e-9)
    rows = []
    for ms, results in ((0, refs), (delay, runs)):
        row = {name: statistics.median(r[name] for r in results)
               for name in ("rps", "p50", "p99", "cpu_us", "host", "other", "accept_s")}
        requests_ = sum(r["requests"] for r in results)
        row.update(title=f"POST /auth/login ({LOGINS[key]})", delay=ms,
                   connections=connections, errors=sum(r["errors"] for r in results),
                   requests=requests_,
                   conns_per_1000=1000 * sum(r["opened"] for r in results) / max(1, requests_))
        if ms:
            row["ratio"] = statistics.median(r["ratio"] for r in results)
        rows.append(row)
    return rows


def stall_once(base: str, token: str, args, tmp: Path, workers: list[int],
               standin: Standin, own: list[int]) -> dict:
    """One GET /profile run while the stand-in stalls with --latency-connections logins
    pending (wrk in the background); then the stall ends and the logins are answered."""
    standin.set(delay_ms=args.wechat_delay, stall=True)
    script = LUA["login_new"] % {"run": secrets.token_hex(4)}
    logins = subprocess.Popen(
        wrk_args(base + "/auth/login", script, 3600, args.latency_connections, tmp,
                 timeout=args.wechat_timeout + 30),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while (standin.stats()["pending"] < args.latency_connections
               and time.monotonic() < deadline and logins.poll() is None):
            time.sleep(0.1)
        pending_before = standin.stats()["pending"]
        profile = measure(base + "/profile", LUA["profile_get"] % {"token": token}, args, tmp,
                          workers, args.profile_connections, args.wrk_timeout, own)
        pending_after = standin.stats()["pending"]
        standin.set(stall=False)
        standin.drain()
        time.sleep(0.5)  # the released logins' answers reach wrk
    finally:
        if logins.poll() is None:
            logins.send_signal(signal.SIGINT)  # wrk stops and prints what it counted
        out, _ = logins.communicate(timeout=30)
        standin.set(stall=False)
    try:
        answered = parse_wrk(out)
    except AttributeError:  # no summary
        answered = {"requests": 0, "errors": -1}
    return {**profile, "pending": (pending_before, pending_after), "logins": answered}


def stall_profile(base: str, token: str, args, tmp: Path, workers: list[int],
                  standin: Standin, own: list[int]) -> list[dict]:
    """GET /profile with no login pending (the reference) and while WeChat stalls with
    --latency-connections logins pending, alternating; the medians, as two rows."""
    script = LUA["profile_get"] % {"token": token}
    refs, runs = [], []
    for _ in range(args.repeat):
        standin.set(delay_ms=args.wechat_delay, stall=False)
        standin.drain()
        settle(workers)
        refs.append(measure(base + "/profile", script, args, tmp, workers,
                            args.profile_connections, args.wrk_timeout, own))
        settle(workers)
        runs.append(stall_once(base, token, args, tmp, workers, standin, own))
    for result in refs + runs:
        result["rps"] *= 1 - result["non2xx"] / max(1, result["requests"])
    for run, ref in zip(runs, refs):
        run["ratio"] = run["rps"] / max(ref["rps"], 1e-9)
    rows = []
    for delay, results in ((0, refs), ("stall", runs)):
        row = {name: statistics.median(r[name] for r in results)
               for name in ("rps", "p50", "p99", "cpu_us", "host", "other")}
        row.update(title=("GET /profile, no login pending" if delay == 0 else
                          "GET /profile, WeChat stalled, logins pending"), delay=delay,
                   connections=args.profile_connections,
                   errors=sum(r["errors"] for r in results),
                   requests=sum(r["requests"] for r in results))
        if delay == "stall":
            row["ratio"] = statistics.median(r["ratio"] for r in results)
            row["pending"] = (min(r["pending"][0] for r in results),
                              min(r["pending"][1] for r in results))
            row["logins"] = {"requests": sum(r["logins"]["requests"] for r in results),
                             "errors": sum(r["logins"]["errors"] for r in results)}
        rows.append(row)
    return rows


def run_latency(label: str, database_url: str, args, tmp: Path, procs: Processes,
                standin: Standin, redis_url: str, own: list[int]) -> list[dict]:
    """The latency scenario on its own wxauth server (WECHAT_TIMEOUT = --wechat-timeout)."""
    env = {**os.environ, **server_env(standin.url, database_url,
                                      tmp / f"instance-{label}-latency", redis_url),
           # (a call's whole deadline too, or the stalled logins end at its default)
           "WECHAT_TIMEOUT": f"{args.wechat_timeout:g}",
           "WECHAT_DEADLINE": f"{args.wechat_timeout:g}"}
    standin.set(delay_ms=0, stall=False)
    master, base = start_wxauth(f"wxauth-{label}-latency", env, args, procs)
    workers = worker_pids(master.pid)
    own = [master.pid, *own]
    low = [pid for pid in [master.pid, *workers] if nofile_of(pid) < args.burst_connections + 64]
    if low:
        print(f"warning: open-file limit below {args.burst_connections + 64} for gunicorn "
              f"processes {low}: the burst may fail on accept", file=sys.stderr)
    token, _ = prepare_user(base)
    rows = []
    for key in LOGINS:
        rows += latency_pairs(key, args.wechat_delay, args.latency_connections, base, args,
                              tmp, workers, standin, own)
    burst = latency_pairs(args.burst_logins, args.burst_delay, args.burst_connections,
                          base, args, tmp, workers, standin, own)
    for row in burst:
        row["title"] += ", burst"
    rss = [peak_rss_mb(pid) for pid in worker_pids(master.pid)]
    burst[-1]["rss"] = max(rss) if rss else float("nan")
    rows += burst
    rows += stall_profile(base, token, args, tmp, workers, standin, own)
    rss = [peak_rss_mb(pid) for pid in worker_pids(master.pid)]
    rows[-1]["rss"] = max(rss) if rss else float("nan")
    standin.set(delay_ms=0, stall=False)
    procs.stop_one(master)
    for row in rows:
        row["label"] = label
        row["verdict"] = verdict(row)
    return rows


def verdict(row: dict) -> str:
    """The targets beside the figures: "(reference)", "met", or what missed."""
    if row["delay"] == 0:
        return "(reference)"
    missed = []
    if row["errors"]:
        missed.append("errors")
    if row["delay"] == "stall":
        if not row["p99"] <= STALL_TARGET["p99"]:
            missed.append("p99")
    elif ", burst" in row["title"]:
        if not row["ratio"] >= BURST_TARGET["ratio"]:
            missed.append("ratio")
        if not row.get("rss", 0) <= BURST_TARGET["rss"]:
            missed.append("RSS")
    else:
        if not row["ratio"] >= LATENCY_TARGET["ratio"]:
            missed.append("ratio")
        if not row["p99"] <= LATENCY_TARGET["p99"]:
            missed.append("p99")
    return "met" if not missed else "MISSED: " + ", ".join(missed)


def target_text(row: dict) -> str:
    if row["delay"] == 0:
        return ""
    if row["delay"] == "stall":
        return f"p99 <= {STALL_TARGET['p99']:g}, 0 err"
    if ", burst" in row["title"]:
        return f">= {BURST_TARGET['ratio']} x, 0 err, <= {BURST_TARGET['rss']:g} MB"
    return f">= {LATENCY_TARGET['ratio']} x, 0 err, p99 <= {LATENCY_TARGET['p99']:g}"


def run_conditions(args, redis_url: str) -> str:
    """What both tables ran under: run length, repeats, CPUs, Redis."""
    return (f"{args.duration} s per run, medians of {args.repeat} alternations, "
            f"{os.cpu_count()} CPUs, "
            f"{'Redis ' + redis_url if redis_url else 'no Redis (in-process store)'}")


def print_latency(rows: list[dict], args, redis_url: str) -> None:
    print(f"\nlatency scenario ({source_state()}): gunicorn.conf.py ({worker_class()}), "
          f"-w {args.workers}, WECHAT_TIMEOUT=WECHAT_DEADLINE={args.wechat_timeout:g} s, "
          "WeChat stand-in delayed\n(0ms: the same server's reference), "
          f"wrk -t 2 --timeout {args.wrk_timeout:g}s, "
          f"{run_conditions(args, redis_url)}\n")
    header = (f"{'scenario':62} {'WeChat':>6} {'conns':>5} {'ok/s':>7} {'p50 ms':>7} "
              f"{'p99 ms':>7} {'errors':>6} {'ratio':>5} {'accept':>6} {'conn/1k':>7} "
              f"{'RSS MB':>6} {'cpu us':>6} {'host%':>5} {'other%':>6}  {'target':34} verdict")
    print(header)
    print("-" * len(header))
    for r in rows:
        delay = "stall" if r["delay"] == "stall" else f"{r['delay']:g}ms"
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else "-"
        conns = f"{r['conns_per_1000']:.1f}" if "conns_per_1000" in r else "-"
        rss = f"{r['rss']:.1f}" if "rss" in r else "-"
        accept = f"{r['accept_s']:.1f}s" if "accept_s" in r else "-"
        print(f"{r['title'] + ' [' + r['label'] + ']':62} {delay:>6} {r['connections']:5d} "
              f"{r['rps']:7.0f} {r['p50']:7.2f} {r['p99']:7.2f} {r['errors']:6d} {ratio:>5} "
              f"{accept:>6} {conns:>7} {rss:>6} {r['cpu_us']:6.0f} {r['host']:5.0f} "
              f"{r['other']:6.0f}  "
              f"{target_text(r):34} {r['verdict']}")
    print("""
ok/s     2xx answers per second (errors are not throughput)
ratio    ok/s over the 0ms row above it: same server, same connections (median of the
         alternations' ratios)
errors   non-2xx answers and socket errors (connect, read, write, timeout) wrk counted
accept   how long into the run connections still waited to be accepted (their first
         requests waited with them, in wrk's latency)
conn/1k  TCP connections wxauth opened to the stand-in per 1,000 logins
RSS MB   peak RSS of the largest worker after the run
cpu us   the workers' CPU time (user + system) per request
host%    how busy the machine's CPUs were (every process); other%: the part of it no process
         of this benchmark used: other work on the machine (and a local PostgreSQL server);
         figures are noisy when it is not ~0""")
    for r in rows:
        if r["delay"] == "stall":
            before, after = r["pending"]
            logins = r["logins"]
            print(f"\n{r['title']} [{r['label']}]: {args.profile_connections} connections for "
                  f"{args.duration} s (runs: {args.repeat}) while the stand-in held at least "
                  f"{before} code2Session calls when a run started ({after} when it ended) "
                  f"from wrk's {args.latency_connections} login connections; after the "
                  f"stalls {logins['requests']} logins were answered, with {logins['errors']} "
                  "errors.")


def source_state() -> str:
    """The code measured: its commit, and whether the working tree differs from it."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, text=True,
                              capture_output=True, timeout=10).stdout.strip() or "no git"
    except (OSError, subprocess.SubprocessError):
        return "no git"


def worker_class() -> str:
    value = os.environ.get("GUNICORN_WORKER_CLASS", "").strip()
    return (value or "gevent") + " workers"


@contextlib.contextmanager
def scratch_postgres(url: str):
    """A database of its own on the server of `url` for one run, dropped afterwards."""
    from sqlalchemy import create_engine, make_url, text

    name = f"wxauth_bench_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}" ENCODING \'UTF8\''))
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def print_table(rows: list[dict], args, redis_url: str) -> None:
    print(f"\nwxauth benchmark: gunicorn.conf.py ({worker_class()}), -w {args.workers}, "
          f"wrk -c {args.connections}, "
          f"{run_conditions(args, redis_url)}\n")
    header = (f"{'scenario':48} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
              f"{'bare/s':>7} {'ratio':>6} {'conn/1k':>7} {'RSS MB':>6} {'cpu us':>6} "
              f"{'bare us':>7}")
    print(header)
    print("-" * len(header))
    cost_rows = [r for r in rows if r.get("login_log")]
    refused_rows = [r for r in rows if "refused" in r]
    algorithm_rows = [r for r in rows if r.get("algorithms")]
    rows = [r for r in rows if not r.get("login_log") and "refused" not in r
            and not r.get("algorithms")]
    for r in rows:
        conns = f"{r['conns_per_1000']:.1f}" if "conns_per_1000" in r else "-"
        print(f"{r['title']:48} {r['rps']:8.0f} {r['p50']:7.2f} {r['p99']:7.2f} "
              f"{r['errors']:6d} {r['bare']:7.0f} {r['ratio']:6.2f} {conns:>7} {r['rss']:6.1f} "
              f"{r['cpu_us']:6.0f} {r['bare_cpu_us']:7.0f}")
    print("\ncpu us: CPU time (user + system) of the server's workers per request (median);"
          "\nbare us: the same for the bare endpoint (same gunicorn.conf.py). The WeChat "
          "stand-in, on the same cores, used per login:")
    for r in rows:
        if r["title"].startswith("POST /auth"):
            print(f"  {r['standin_us']:.0f} us  {r['title']}")
    for r in rows:
        if "note" in r:
            print(f"\n{r['title']}: {r['note']}")
    if cost_rows:
        print_login_log_cost(cost_rows)
    if algorithm_rows:
        print_algorithm_cost(algorithm_rows)
    for r in refused_rows:  # (bench/refused.py)
        counted = r["refused"]
        print(f"\ndatabase statements per 10,000 refused logins (100 addresses, one minute, "
              f"the rows written after it included) [{r['title']}]: "
              f"{10_000 * counted['statements'] / counted['refused']:.0f}, of which "
              f"{10_000 * counted['writes'] / counted['refused']:.0f} writes")


def print_login_log_cost(rows: list[dict]) -> None:
    print("\nthe login log's cost: logins with it and without a login's login-log and session "
          "rows\n(bench/without_login_log.py), alternating on one database (medians):\n")
    header = (f"{'scenario':48} {'req/s':>8} {'without':>8} {'change':>7} {'cpu us':>7} "
              f"{'without':>8} {'+cpu us':>7} {'errors':>6}")
    print(header)
    print("-" * len(header))
    for r in rows:
        change = 100 * (r["rps"] / r["rps_without"] - 1) if r["rps_without"] else float("nan")
        print(f"{r['title']:48} {r['rps']:8.0f} {r['rps_without']:8.0f} {change:+6.1f}% "
              f"{r['cpu_us']:7.0f} {r['cpu_us_without']:8.0f} "
              f"{r['cpu_us'] - r['cpu_us_without']:+7.0f} {r['errors']:6d}")


def print_algorithm_cost(rows: list[dict]) -> None:
    print("\nthe signing algorithm's cost (JWT_ALGORITHM): the logins on a server per "
          "algorithm,\neach on a fresh database, alternating (medians); change: req/s against "
          "HS256\n")
    header = f"{'scenario':48} {'algorithm':>9} {'req/s':>8} {'change':>7} {'cpu us':>7}"
    print(header)
    print("-" * len(header))
    for r in rows:
        base = r["HS256"]["rps"]
        for name in ALGORITHMS:
            change = 100 * (r[name]["rps"] / base - 1) if base else float("nan")
            print(f"{r['title']:48} {name:>9} {r[name]['rps']:8.0f} {change:+6.1f}% "
                  f"{r[name]['cpu_us']:7.0f}")
        print(f"{'':48} errors {r['errors']}")


def main() -> None:
    parser = argparse.ArgumentParser(description="wxauth login-path benchmark")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=int, default=8, help="seconds per measurement")
    parser.add_argument("--repeat", type=int, default=3,
                        help="alternations of reference and scenario per scenario (medians)")
    parser.add_argument("--connections", type=int, default=16,
                        help="wrk connections for the table (not the latency scenario)")
    parser.add_argument("--postgres", help="also run on this PostgreSQL server (URL; each "
                                           "run in a scratch database, dropped afterwards)")
    parser.add_argument("--redis", help="REDIS_URL to use ('none': the in-process store); "
                                        "default: a private redis-server")
    parser.add_argument("--refused-logins", type=int, default=10_000,
                        help="logins of the refused-login flood (bench/refused.py)")
    parser.add_argument("--only", choices=("table", "latency", "algorithms"),
                        help="run only the table against the bare endpoint (with the login "
                             "log's and the signing algorithms' cost), only the latency "
                             "scenario, or only the signing algorithms' logins (default: "
                             "table and latency)")
    parser.add_argument("--rows", type=lambda text: set(text.split(",")),
                        help="only these rows of the table: their paths or keys, comma-"
                             "separated (e.g. /auth/verify,login_new; default: all)")
    latency = parser.add_argument_group("latency scenario")
    latency.add_argument("--wechat-delay", type=float, default=100, metavar="MS",
                         help="the stand-in's code2Session delay (default 100 ms)")
    latency.add_argument("--latency-connections", type=int, default=256,
                         help="wrk connections for the delayed logins and the logins pending "
                              "during the stall (default 256)")
    latency.add_argument("--burst-delay", type=float, default=300, metavar="MS",
                         help="the stand-in's delay during the burst (default 300 ms)")
    latency.add_argument("--burst-connections", type=int, default=1024,
                         help="wrk connections for the burst (default 1024)")
    latency.add_argument("--burst-logins", choices=tuple(LOGINS), default="login_returning",
                         help="which logins the burst sends (default returning)")
    latency.add_argument("--profile-connections", type=int, default=8,
                         help="wrk connections on GET /profile during the stall (default 8)")
    latency.add_argument("--wechat-timeout", type=float, default=30, metavar="S",
                         help="the latency server's WECHAT_TIMEOUT and WECHAT_DEADLINE, long "
                              "enough for the logins to stay pending through the stall "
                              "(default 30 s; production's defaults are 5 and 10)")
    latency.add_argument("--wrk-timeout", type=float, default=10, metavar="S",
                         help="wrk's --timeout in the latency scenario: slower answers count "
                              "as errors (default 10 s)")
    args = parser.parse_args()
    # stopped with SIGTERM (a CI timeout): the servers are stopped all the same (finally)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk (make bench does it)")
    if args.only in (None, "latency"):  # wrk's sockets, a worker's clients plus its WeChat connections
        needed = 2 * args.burst_connections + 1024
        if raise_nofile(needed) < args.burst_connections + 64:
            print(f"warning: open-file limit {resource.getrlimit(resource.RLIMIT_NOFILE)[0]} "
                  f"is too low for --burst-connections {args.burst_connections}",
                  file=sys.stderr)

    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="wxauth-bench-"))
    procs = Processes(tmp)
    table, latency_rows = [], []
    try:
        with contextlib.ExitStack() as stack:
            standin_port = free_port()
            standin_url = f"http://127.0.0.1:{standin_port}"
            standin = procs.start("standin", [sys.executable, str(ROOT / "bench" / "standin.py"),
                                              str(standin_port)], dict(os.environ),
                                  standin_url + "/stats")
            redis_url = start_redis(procs, tmp, args.redis)
            redis_pids = [p.pid for p in procs.procs if p.args[0] == "redis-server"]
            databases = [("sqlite", f"sqlite:///{tmp / 'bench.db'}",
                          f"sqlite:///{tmp / 'bench-latency.db'}")]
            if args.postgres:
                databases.append(("postgresql",
                                  stack.enter_context(scratch_postgres(args.postgres)),
                                  stack.enter_context(scratch_postgres(args.postgres))))
            if args.only == "algorithms":
                env = {**os.environ, **server_env(standin_url, databases[0][1],
                                                  tmp / "instance-algorithms", redis_url)}
                table += algorithm_cost("sqlite", env, args, tmp, procs)
            elif args.only != "latency":
                bare_port = free_port()
                bare_url = f"http://127.0.0.1:{bare_port}"
                bare = procs.start("bare", [sys.executable, "-m", "gunicorn",  # the same gunicorn
                                            "-c", str(ROOT / "gunicorn.conf.py"),
                                            "-w", str(args.workers), "--threads", "1",
                                            "-b", f"127.0.0.1:{bare_port}", "bench.bare:app"],
                                   dict(os.environ), bare_url + "/json")
                for label, url, _ in databases:
                    table += run_database(label, url, args, tmp, procs, standin_url,
                                          standin.pid, bare_url, bare.pid, redis_url)
                procs.stop_one(bare)
            if args.only in (None, "latency"):
                for label, _, url in databases:
                    latency_rows += run_latency(label, url, args, tmp, procs,
                                                Standin(standin_url), redis_url,
                                                [standin.pid, *redis_pids])
            procs.stop()  # (before the scratch databases are dropped)
    finally:
        procs.stop()

    if args.only == "algorithms":
        print(f"\nwxauth benchmark: gunicorn.conf.py ({worker_class()}), -w {args.workers}, "
              f"wrk -c {args.connections}, {run_conditions(args, redis_url)}")
        print_algorithm_cost(table)
    elif table:
        print_table(table, args, redis_url)
    if latency_rows:
        print_latency(latency_rows, args, redis_url)
    print(f"\n{time.monotonic() - started:.0f} s; servers' logs in {tmp}")


if __name__ == "__main__":
    main()

"""The login rate limit (wxauth.infra.ratelimit): Redis failing mid-run under gunicorn, one
Redis round trip per login, no timer thread without Redis, and a rate-limited flood written
to the login log once per address and minute."""

from __future__ import annotations

import math
import re
import socket
import threading
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from faults import PrivateRedis
from helpers import Process, ServerClient, assert_problem, free_port, migrate
from test_metrics import METRICS_TOKEN, scrape, value
from wxauth.extensions import db
from wxauth.infra.ratelimit import RECHECK_SECONDS, MemoryWindows, RedisWindows
from wxauth.models import LoginEvent
from wxauth.state import state

WARNING = "counting in this process until it answers"


@pytest.fixture
def redis_server():
    with PrivateRedis() as server:
        yield server


def test_redis_down_logins_go_on_under_the_per_process_limit(production_env, emulator,
                                                             redis_server):
    """Redis killed mid-run under gunicorn: logins answer 200, not 503, counted by the
    worker's own limit, which still refuses beyond it (429); one WARNING, the fallbacks in
    /metrics; Redis back: one INFO line, counted in Redis again."""
    env = dict(production_env, REDIS_URL=redis_server.url, REDIS_TIMEOUT="1",
               LOGIN_RATE_LIMIT="4 per minute", METRICS_TOKEN=METRICS_TOKEN)
    migrate(env)
    port = free_port()
    server = Process(["gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}", "wsgi:app"], env,
                     f"http://127.0.0.1:{port}")
    try:
        client = ServerClient(server.url, emulator)
        assert client.login("o-rl-1")["access_token"]  # counted in Redis
        redis_server.stop()  # SIGKILL
        for i in range(4):  # the worker's own budget: 4 more
            response = client.post("/auth/login",
                                   json={"code": emulator.mint(f"o-rl-{i}")["code"]})
            assert response.status_code == 200, response.text
            assert response.headers["X-RateLimit-Remaining"] == str(3 - i)
        refused = client.post("/auth/login", json={"code": emulator.mint("o-rl-5")["code"]})
        assert_problem(refused, 429, "rate_limited")
        assert 0 < int(refused.headers["Retry-After"]) <= 60
        assert value(scrape(server.url), "wxauth_store_fallbacks_total", use="rate_limit") == 5
        assert server.output().count(WARNING) == 1

        redis_server.start()  # empty: the budget starts again
        time.sleep(RECHECK_SECONDS + 0.5)  # Redis is tried again
        response = client.post("/auth/login", json={"code": emulator.mint("o-rl-6")["code"]})
        assert response.status_code == 200, response.text
        assert response.headers["X-RateLimit-Remaining"] == "3"
        assert value(scrape(server.url), "wxauth_store_fallbacks_total", use="rate_limit") == 5
        client.http.close()
    finally:
        server.stop()
    output = server.output()
    assert output.count(WARNING) == 1 and output.count("shared rate limit back") == 1, output
    assert "Traceback" not in output and "store_unavailable" not in output


class Monitor:
    """Redis's MONITOR on a connection of its own: the commands clients send (not those a
    script runs)."""

    def __init__(self, address: tuple[str, int]):
        self.sock = socket.create_connection(address, timeout=5)
        self.sock.sendall(b"MONITOR\r\n")
        self.data = b""
        while b"+OK\r\n" not in self.data:
            self.data += self.sock.recv(4096)
        self.data = b""

    def client_commands(self, settle: float = 0.3) -> list[str]:
        """The lines seen so far (waiting `settle` s for the last) from clients, not Lua."""
        self.sock.settimeout(settle)
        try:
            while chunk := self.sock.recv(65536):
                self.data += chunk
        except TimeoutError:
            pass
        lines, self.data = self.data.decode(errors="replace").splitlines(), b""
        return [line for line in lines if line.startswith("+") and " lua] " not in line]

    def close(self) -> None:
        self.sock.close()


def test_one_redis_round_trip_per_login(app_config, request, redis_server):
    """Two limits, logins allowed and refused: each login sends Redis one command."""
    app_config.update(REDIS_URL=redis_server.url, LOGIN_RATE_LIMIT="3 per minute; 50 per hour")
    server = request.getfixturevalue("server")
    server.post("/auth/login", json={"code": "x"})  # (the script is loaded once, here)
    monitor = Monitor(redis_server.address)
    try:
        monitor.client_commands()
        answers = []
        for _ in range(6):
            answers.append(server.post("/auth/login", json={"code": "x"}).status_code)
            commands = monitor.client_commands()
            assert len(commands) == 1 and '"EVALSHA"' in commands[0].upper(), commands
    finally:
        monitor.close()
    assert answers == [400, 400] + [429] * 4


def test_no_thread_per_hit_without_redis(app_config, request):
    """In-process counting (no REDIS_URL) starts no thread: limits' MemoryStorage started a
    10 ms Timer on nearly every hit (refused logins here: answered well within it)."""
    app_config.update(LOGIN_RATE_LIMIT="1 per minute")
    client = request.getfixturevalue("client")
    for i in range(100):
        response = client.post("/auth/login", json={"code": "x"})
        assert response.status_code == (400 if i == 0 else 429)
        assert not [t for t in threading.enumerate() if isinstance(t, threading.Timer)]


def test_memory_windows_forget_ended_windows():
    """The in-process counters of ended windows are dropped (memory stays bounded by the
    addresses of the last window), and a new window starts from 1."""
    windows = MemoryWindows(sweep_seconds=1)
    for i in range(500):
        refused, counted, _ = windows.hit([(f"k{i}", 1, 1)], "m", math.inf, None, 0)
        assert refused == 0 and counted[0][0] == 1 and 0 < counted[0][1] <= 1000
    assert len(windows) == 500
    time.sleep(1.1)
    refused, counted, _ = windows.hit([("k0", 1, 1)], "m", math.inf, None, 0)
    assert refused == 0 and counted[0][0] == 1
    assert len(windows) == 1


@pytest.fixture(params=["memory", "redis"])
def windows(request):
    if request.param == "memory":
        yield MemoryWindows()
        return
    with PrivateRedis() as redis_server:
        yield RedisWindows(redis_server.url, "test/refused/", timeout=2, max_connections=4)


def test_the_refusal_book_hands_each_minute_out_once_when_it_is_due(windows):
    """Refusals add up per member; an entry is handed out once, not before its due time,
    with the first refusal's User-Agent; allowed hits are not booked."""
    limit = [("win", 1, 60)]
    assert windows.hit(limit, "202612070600/10.0.0.1", 100, "ua-1", 0)[0] == 0
    for agent in ("ua-1", "ua-2", "ua-3"):
        refused, counted, closed = windows.hit(limit, "202612070600/10.0.0.1", 100, agent, 99)
        assert refused == 1 and closed == []
    windows.hit(limit, "202612070601/10.0.0.1", 160, "ua-4", 99)
    assert windows.take(99.5) == []
    assert windows.take(100) == [("202612070600/10.0.0.1", 3, "ua-1")]
    assert windows.take(100) == []
    assert windows.take(math.inf) == [("202612070601/10.0.0.1", 1, "ua-4")]


def _writes(statements: list[str]) -> list[str]:
    return [s for s in statements if re.match(r"\s*(INSERT|UPDATE|DELETE)", s, re.I)]


def test_a_rate_limited_flood_costs_one_write_per_address_and_minute(app_config, request):
    """30 refusals from each of two addresses: no database write while the minute lasts,
    then one INSERT for both (here by `flask logs prune`, which writes what the book
    holds): one row per address, its count the refusals, the first's User-Agent."""
    app_config.update(LOGIN_RATE_LIMIT="2 per minute", TRUSTED_PROXIES="127.0.0.1")
    server = request.getfixturevalue("server")
    app = request.getfixturevalue("app")
    other = {"X-Forwarded-For": "203.0.113.7"}
    for headers in ({}, other):
        for _ in range(2):
            assert server.post("/auth/login", json={"code": "x"},
                               headers=headers).status_code == 400
    statements = []
    with app.app_context():
        sa.event.listen(db.engine, "before_cursor_execute",
                        lambda conn, cursor, statement, *args: statements.append(statement))
    for headers in ({}, other):
        for i in range(30):
            response = server.post("/auth/login", json={"code": "x"},
                                   headers={**headers, "User-Agent": f"bot/{i}"})
            assert_problem(response, 429, "rate_limited")
    assert _writes(statements) == []
    before = len(statements)
    request.getfixturevalue("runner").invoke(args=["logs", "prune"])
    # (prune's other write: the audit trail's expired rows, one DELETE of its own)
    login_log_writes = [s for s in _writes(statements[before:]) if "audit_events" not in s]
    assert len(login_log_writes) == 1, statements[before:]
    with app.app_context():
        limited = db.session.execute(sa.select(LoginEvent).where(
            LoginEvent.outcome == "rate_limited")).scalars().all()
    by_address = {}
    for event in limited:  # one row, two when the flood crossed a minute's end
        assert event.at.second == 0 and event.user_agent.startswith("bot/")
        by_address[event.client_address] = by_address.get(event.client_address, 0) + event.count
    assert by_address == {"127.0.0.1": 30, "203.0.113.7": 30}
    assert len(limited) <= 4


def test_an_ended_minute_is_written_by_the_next_login(app_config, request):
    """Without a flush: the next login after a booked minute is due writes its row (the
    entry is booked directly, for a minute long past, instead of waiting for one to end)."""
    server = request.getfixturevalue("server")
    app = request.getfixturevalue("app")
    book = state(app).login_rate_limit.local
    for _ in range(7):
        book.hit([("test-window", 0, 60)], "202612070600/198.51.100.9", 1, "bot/9", 0)
    server.post("/auth/login", json={"code": "x"})
    with app.app_context():
        rows = db.session.execute(sa.select(LoginEvent).where(
            LoginEvent.outcome == "rate_limited")).scalars().all()
    assert [(e.at, e.client_address, e.count, e.user_agent) for e in rows] == [
        (datetime(2026, 12, 7, 6, 0, tzinfo=UTC), "198.51.100.9", 7, "bot/9")]
    assert book.take(math.inf) == []

"""Issue 22 §5: what a WeChat outage writes to the log, and what a timeout tells the client.

- While the circuit breaker is open, the refused calls (503 wechat_unavailable at once) log
  nothing above INFO: the breaker logs one WARNING per state change (opened, half-open,
  closed) and the metrics count the rest. Before, every refused call logged an ERROR line
  (about 1,500 in 20 s; 8 s of them here). Real gunicorn (gevent workers, JSON logs) in front of a relay to the
  emulator that stalls.
- 504 wechat_timeout carries Retry-After (3 s, `wxauth.wechat.client.WeChatTimeout`).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import datetime

from faults import Relay
from helpers import assert_problem
from test_logs import json_lines
from test_metrics import METRICS_TOKEN, scrape, value
from test_resilience_gunicorn import login, start_gunicorn, worker_pids

FAILURES, COOLDOWN, REFUSING = 3, 14.0, 8.0  # breaker settings; seconds of refused calls
STATES = {"opened": "open", "half-open": "half-open", "closed": "closed"}


def _loud(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("level") in ("WARNING", "ERROR", "CRITICAL")]


def _state_changes(records: list[dict]) -> dict[int, list[tuple[str, str]]]:
    """pid → [(new state, level)] from the breaker's lines, in order."""
    changes: dict[int, list[tuple[str, str]]] = {}
    for record in records:
        message = record.get("message", "")
        if message.startswith("WeChat circuit breaker "):
            word = message.removeprefix("WeChat circuit breaker ").split()[0].rstrip(":")
            changes.setdefault(record["pid"], []).append((STATES.get(word, word),
                                                          record["level"]))
    return changes


def test_an_open_breaker_logs_its_state_changes_not_each_refused_call(production_env, emulator):
    """WeChat stalls: concurrent logins time out (504, an ERROR line each) until each of
    the two workers' breakers opens (FAILURES timeouts in a row). Then for REFUSING s
    8 clients log in without pause: every answer is 503 wechat_unavailable with
    Retry-After, and the log gets no line above INFO meanwhile. WeChat answers again; after
    the cool-down each worker's next call probes it and closes the breaker. Per worker the
    log holds exactly three breaker lines, WARNING each: opened, half-open, closed. /metrics
    counts one opening per worker (not one per call in flight when it opened), the state
    closed, and the refused calls (errcode="unavailable")."""
    with Relay(emulator.url) as relay:
        server = start_gunicorn(dict(production_env, LOG_FORMAT="json",
                                     METRICS_TOKEN=METRICS_TOKEN),
                                WECHAT_API_BASE=relay.url_for(), WECHAT_TIMEOUT="1",
                                WECHAT_BREAKER_FAILURES=str(FAILURES),
                                WECHAT_BREAKER_COOLDOWN=str(COOLDOWN))
        try:
            workers = worker_pids(server.proc.pid)
            relay.mode = "stall"
            opening_started = time.monotonic()
            timeouts = Counter()
            refusing_batches = 0  # in a row (how a breaker that logs nothing shows open)
            while (len(_state_changes(json_lines(server.output()))) < len(workers)
                   and refusing_batches < 2):
                assert time.monotonic() - opening_started < 20, server.output()[-3000:]
                answers: list = []
                threads = [threading.Thread(target=lambda: answers.append(
                    login(server.url, "x", timeout=10))) for _ in range(16)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                timeouts.update((a.status_code, a.json()["code"]) for a in answers)
                refusing_batches = (refusing_batches + 1
                                    if {a.status_code for a in answers} == {503} else 0)
            # every breaker is open, no call in flight: only refusals from here on
            quiet_from = datetime.now().astimezone()
            refused = Counter()
            lock = threading.Lock()
            stop = threading.Event()

            def client() -> None:
                while not stop.is_set():
                    answer = login(server.url, "x", timeout=10)
                    retry_after = int(answer.headers.get("Retry-After", 0))
                    with lock:
                        refused[(answer.status_code, answer.json()["code"],
                                 0 < retry_after <= COOLDOWN)] += 1

            refusing_from = time.monotonic()
            clients = [threading.Thread(target=client) for _ in range(8)]
            for thread in clients:
                thread.start()
            # (stop before the first breaker's cool-down ends, whatever the opening took)
            time.sleep(min(REFUSING, opening_started + COOLDOWN - 1 - time.monotonic()))
            stop.set()
            for thread in clients:
                thread.join()
            refusing = time.monotonic() - refusing_from
            quiet_until = datetime.now().astimezone()

            relay.mode = "pass"
            recovering = time.monotonic()
            while any(len(c) < 3 for c in _state_changes(json_lines(server.output())).values()):
                assert time.monotonic() - recovering < COOLDOWN + 15, server.output()[-3000:]
                login(server.url, emulator.mint()["code"], timeout=10)
                time.sleep(0.05)
            samples = scrape(server.url)
        finally:
            server.stop()
    records = json_lines(server.output())
    during = [r for r in records
              if quiet_from <= datetime.fromisoformat(r["time"]) <= quiet_until]
    changes = _state_changes(records)
    loud_during = _loud(during)
    assert refusing >= REFUSING - 2, refusing
    assert set(refused) == {(503, "wechat_unavailable", True)}, refused
    assert sum(refused.values()) >= 200, refused
    assert len(during) >= sum(refused.values())  # (an access line each, at INFO)
    assert not loud_during, (len(loud_during), sum(refused.values()), loud_during[:3])
    assert set(changes) == workers, changes
    for pid, seen in changes.items():
        assert seen == [("open", "WARNING"), ("half-open", "WARNING"), ("closed", "WARNING")], \
            (pid, seen)
    # above INFO from the app in the whole run: the timeouts that opened the breakers, and
    # its changes (gunicorn's master warns of the missing REDIS_URL, and the first login of
    # a new database that it generated a signing key: not under test)
    loud = Counter((r["level"], r["logger"]) for r in _loud(records)
                   if r["logger"].startswith("wxauth") and r["logger"] != "wxauth.services.keys")
    assert loud[("WARNING", "wxauth.wechat.client")] == 3 * len(workers), loud
    assert loud[("ERROR", "wxauth.errors")] == timeouts[(504, "wechat_timeout")], (loud, timeouts)
    assert set(loud) <= {("WARNING", "wxauth.wechat.client"), ("ERROR", "wxauth.errors")}, loud
    # the metrics: one opening per worker, closed again
    assert value(samples, "wxauth_wechat_circuit_opened_total") == len(workers)
    assert value(samples, "wxauth_wechat_circuit_state") == 0
    assert value(samples, "wxauth_wechat_calls_total", api="code2Session",
                 errcode="unavailable") >= sum(refused.values())
    print(f"\nbreaker open: {sum(refused.values())} refused calls in {refusing:.1f} s, "
          f"{len(loud_during)} log lines above INFO meanwhile; breaker lines {changes}; "
          f"logins while it opened {dict(timeouts)}")


def test_a_timeout_says_when_to_try_again(server):
    """504 wechat_timeout (WeChat silent beyond WECHAT_TIMEOUT, 2 s here) carries
    Retry-After: 3, and its detail says to wait for it, in English and Chinese."""
    for language, advice in (("en", "Retry after Retry-After seconds"),
                             ("zh-CN", "请在 Retry-After 秒后重试")):
        code = server.emulator.mint(delay=3)["code"]
        response = server.post("/auth/login", json={"code": code},
                               headers={"Accept-Language": language})
        body = assert_problem(response, 504, "wechat_timeout")
        assert response.headers["Retry-After"] == "3"
        assert advice in body["detail"], body

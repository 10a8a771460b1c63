"""The benchmarks still run (no timing asserted): bench/costs.py end to end and
bench/run.py's latency scenario, briefly."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from helpers import ROOT, environment


def test_costs_script_prints_every_request_and_part(tmp_path):
    result = subprocess.run([sys.executable, "bench/costs.py", "--count", "20"], cwd=ROOT,
                            env=environment(tmp_path), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    figures = dict(re.findall(r"^(\S.*?)\s{2,}(\d+)$", result.stdout, re.M))
    for title in ("bare Flask JSON endpoint (the reference)", "GET /profile",
                  "POST /auth/refresh (rotation)",
                  "POST /profile (encryptedData, unchanged data)",
                  "POST /auth/login, returning user (pool of 500)", "POST /auth/login, new user",
                  "code2Session call (urllib3, pooled, loopback stand-in)",
                  "a login's access + refresh token (ES256, flask-jwt-extended)",
                  "the access-log line"):
        assert int(figures[title]) > 0, (title, result.stdout)
    # the layer table: a row per layer taken out, a column per request ("-": does not apply)
    for layer in ("the whole request", "the WeChat call (code2Session over HTTP)",
                  "the database work of a login (services.login)",
                  "the login-log and session rows",
                  "the request id and access line (wxauth.web.logs)", "the refresh token",
                  "the rate-limit check", "all of the above"):
        line = next(line for line in result.stdout.splitlines() if line.startswith(layer))
        cells = line[len(layer):].split()
        assert len(cells) == 3 and all(re.fullmatch(r"-?\d+|-", c) for c in cells), line
    assert re.search(r"^the whole request\s+\d+\s+\d+\s+\d+$", result.stdout, re.M)


@pytest.mark.skipif(not shutil.which("wrk"), reason="wrk is not installed (make bench installs it)")
def test_latency_scenario_prints_every_row(tmp_path):
    """bench/run.py's latency scenario, tiny (no timing asserted): every row, with numbers."""
    result = subprocess.run([sys.executable, "bench/run.py", "--only", "latency",
                             "--duration", "1", "--repeat", "1", "--latency-connections", "32",
                             "--burst-connections", "64"], cwd=ROOT,
                            env=environment(tmp_path), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "latency scenario" in result.stdout, result.stdout
    number = r"(?:\d+(?:\.\d+)?|nan)"
    for row in (r"POST /auth/login \(new users\) \[sqlite\]\s+0ms\s+32",
                r"POST /auth/login \(new users\) \[sqlite\]\s+100ms\s+32",
                r"POST /auth/login \(returning, pool of 500\) \[sqlite\]\s+0ms\s+32",
                r"POST /auth/login \(returning, pool of 500\) \[sqlite\]\s+100ms\s+32",
                r"POST /auth/login \(returning, pool of 500\), burst \[sqlite\]\s+0ms\s+64",
                r"POST /auth/login \(returning, pool of 500\), burst \[sqlite\]\s+300ms\s+64",
                r"GET /profile, no login pending \[sqlite\]\s+0ms\s+8",
                r"GET /profile, WeChat stalled, logins pending \[sqlite\]\s+stall\s+8"):
        # req/s, p50, p99 and errors after the connections; the verdict last
        pattern = (rf"^{row}\s+{number}\s+{number}\s+{number}\s+\d+\s"
                   r".*(met|MISSED: .*|\(reference\))$")
        assert re.search(pattern, result.stdout, re.M), (row, result.stdout)
    assert re.search(r"after the stalls \d+ logins were answered", result.stdout), result.stdout


@pytest.mark.skipif(not shutil.which("wrk"), reason="wrk is not installed (make bench installs it)")
def test_table_prints_the_login_logs_cost(tmp_path):
    """bench/run.py's table, tiny (no timing asserted), ends with the login log's cost: the
    logins with and without a login's login-log and session rows, with numbers; then the
    database statements of a flood of refused logins (one write per address and minute)."""
    result = subprocess.run([sys.executable, "bench/run.py", "--only", "table",
                             "--duration", "1", "--repeat", "1", "--refused-logins", "1000"],
                            cwd=ROOT, env=environment(tmp_path), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "the login log's cost" in result.stdout, result.stdout
    table, cost = result.stdout.split("the login log's cost", 1)
    # the refresh row: every refresh token used once, none refused (a chain per connection);
    # the gateway's check and introspection: every answer a 2xx
    for row in (r"POST /auth/refresh \(rotation\)", r"GET /auth/verify \(nginx auth_request\)",
                r"POST /oauth/introspect \(service client\)"):
        found = re.search(rf"^{row} \[sqlite\]\s+(\d+)\s+\S+\s+\S+\s+(\d+)\s", table, re.M)
        assert found and int(found[1]) > 0 and found[2] == "0", (row, table)
    for row in (r"POST /auth/login \(new users\) \[sqlite\]",
                r"POST /auth/login \(returning, pool of 500\) \[sqlite\]"):
        # req/s with and without, the change, CPU µs with and without, the difference, errors
        pattern = rf"^{row}\s+\d+\s+\d+\s+[+-]\d+\.\d%\s+\d+\s+\d+\s+[+-]\d+\s+0$"
        assert re.search(pattern, cost, re.M), (row, result.stdout)
        # the signing algorithm's cost: a row per algorithm, req/s against HS256, no errors
        for algorithm in ("ES256", "HS256", "RS256"):
            pattern = rf"^{row}\s+{algorithm}\s+\d+\s+[+-]\d+\.\d%\s+\d+$"
            assert re.search(pattern, cost, re.M), (row, algorithm, result.stdout)
    assert len(re.findall(r"^\s+errors 0$", cost, re.M)) == 2, result.stdout
    # and what a flood of refused logins costs the database: a write per address and minute
    refused = re.search(r"^database statements per 10,000 refused logins .*\[sqlite\]: "
                        r"(\d+), of which (\d+) writes$", result.stdout, re.M)
    assert refused and int(refused[2]) <= 100, result.stdout


def test_search_benchmark_prints_every_search(tmp_path):
    """bench/search.py, tiny and on SQLite (no timing asserted): a row per search, with its
    figures, target and index."""
    result = subprocess.run([sys.executable, "bench/search.py", "--sqlite", "--users", "300",
                             "--repeat", "2"], cwd=ROOT, env=environment(tmp_path),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for row, index in (("openid", "ix_users_openid"), ("unionid", "ix_users_unionid"),
                       ("phone", "ix_users_pure_phone_number"),
                       ("account id", "ix_users_account_id"), ("user id", ""),
                       ("nickname prefix (2 characters)", ""),
                       ("nickname prefix (1 character)", "")):
        line = re.search(rf"^{re.escape(row)}\s+(\d+\.\d)\s+(\d+\.\d)\s+2\s+≤ \d+ ms "
                         r"(met|MISSED)\s+(.*)$", result.stdout, re.M)
        assert line and index in line[4], (row, result.stdout)

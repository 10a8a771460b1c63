"""Issue 22 point 2: REDIS_URL=redis+sentinel://…/mymaster. Real processes: a Redis master,
a replica and three sentinels (``redis-server --sentinel``), two gunicorn instances of
wxauth as shipped on one SQLite file, the WeChat emulator. Logins, refreshes and logouts run
on both instances; right after a batch of logouts the master is killed (SIGKILL).

The replica follows the master through a relay that holds the master's stream back by
`LAG` seconds: asynchronous replication running behind, as under load or across zones. The
crash takes what the master had not yet sent with it (the relay's connections are reset with
the kill), so the promoted replica has lost the last writes (the logouts' revocations among
them), as it may in production.

- The service resumes after the failover without a restart; no request answers 500 (a 503
  ``store_unavailable`` with Retry-After while the sentinels elect the new master is fine).
- Not one logged-out token or used refresh token is accepted again.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

import pytest
import redis as redis_lib
import requests

import config
from faults import PrivateRedis, Relay
from helpers import production_environment
from services import IN_CI
from test_config import problems_of
from test_resilience_gunicorn import ONE_SHOT, start_gunicorn, wait_for
from wxauth.infra.store import RedisStore, StoreUnavailable

SERVICE = "mymaster"
LAG = 1.0  # seconds the replica's copy of the master's stream is late
USERS = 6  # logged in before the failover (half of them log out right before it)


def sentinel_config(master_port: int) -> str:
    """Down after 1 s. The failover timeout stays long: within it the sentinels leave the
    replica replicating through the relay (after it they would point it at the master's own
    address); a first failover does not wait for it."""
    return (f"sentinel monitor {SERVICE} 127.0.0.1 {master_port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 60000\n")


class Client:
    """Requests to the two instances, each answer recorded: (seconds since the start,
    instance, what, status, Retry-After, problem code)."""

    def __init__(self, urls: list[str], emulator):
        self.urls = urls
        self.emulator = emulator
        self.started = time.monotonic()
        self.answers: list[tuple[float, int, str, int, str | None, str | None]] = []

    def call(self, instance: int, method: str, path: str, token: str | None = None,
             **kwargs) -> requests.Response:
        headers = {**ONE_SHOT, **({"Authorization": f"Bearer {token}"} if token else {})}
        answer = requests.request(method, self.urls[instance] + path, headers=headers,
                                  timeout=30, **kwargs)
        code = (answer.json().get("code")
                if answer.headers.get("Content-Type", "").startswith("application/problem")
                else None)
        self.answers.append((time.monotonic() - self.started, instance, f"{method} {path}",
                             answer.status_code, answer.headers.get("Retry-After"), code))
        return answer

    def login(self, instance: int) -> requests.Response:
        return self.call(instance, "POST", "/auth/login",
                         json={"code": self.emulator.mint()["code"]})

    def refresh(self, instance: int, refresh_token: str) -> requests.Response:
        return self.call(instance, "POST", "/auth/refresh", refresh_token)

    def logout(self, instance: int, token: str) -> requests.Response:
        return self.call(instance, "POST", "/auth/logout", token)


@pytest.fixture(scope="session")
def redis_server_binary() -> str:
    """The redis-server executable; skips without one (fails under CI=true)."""
    found = shutil.which("redis-server")
    if found is None:
        if IN_CI:
            pytest.fail("CI=true and redis-server is not on PATH")
        pytest.skip("redis-server is not on PATH: this test starts Redis servers and sentinels")
    return found


@pytest.fixture(scope="module")
def failover(tmp_path_factory, emulator, redis_server_binary) -> dict[str, Any]:
    """The whole scenario, once for the module's tests: what the clients saw."""
    tmp_path = tmp_path_factory.mktemp("sentinel")
    with PrivateRedis() as master, Relay(master.url, mode="delay", delay=LAG) as stream, \
            PrivateRedis(extra_args=("--replicaof", "127.0.0.1", str(stream.port))) as replica:
        sentinels = [PrivateRedis(config=sentinel_config(master.port),
                                  extra_args=("--sentinel",)) for _ in range(3)]
        try:
            for sentinel in sentinels:
                sentinel.start()
            wait_for_cluster(replica, sentinels)
            url = ("redis+sentinel://" + ",".join(f"127.0.0.1:{s.port}" for s in sentinels)
                   + f"/{SERVICE}")
            env = production_environment(tmp_path, emulator.url, REDIS_URL=url,
                                         REDIS_TIMEOUT="1")
            servers = [start_gunicorn(env)]
            try:
                servers.append(start_gunicorn(dict(
                    env, WXAUTH_INSTANCE_PATH=str(tmp_path / "instance-b"))))
                masters = [server.proc.pid for server in servers]
                client = Client([s.url for s in servers], emulator)
                result = scenario(client, crash=lambda: (master.stop(), stream.reset()))
                result["through the new master"] = counted_by(replica, client)
                result["restarted"] = [s.proc.poll() is not None for s in servers]
                assert [s.proc.pid for s in servers] == masters
            finally:
                for server in servers:
                    server.stop()
            result["output"] = "".join(server.output() for server in servers)
            result["new master"] = sentinel_master(sentinels[0])["port"]
            result["replica"] = replica.port
            return result
        finally:
            for sentinel in sentinels:
                sentinel.close()


def counted_by(new_master: PrivateRedis, client: Client) -> list[int]:
    """Logins on each instance until the promoted replica counts their rate limit (each
    worker asks Redis again a few seconds after it failed): the instances that did, within
    30 s."""
    link = redis_lib.Redis(*new_master.address, decode_responses=True)

    def evalsha_calls() -> int:
        return link.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)

    found: set[int] = set()
    deadline = time.monotonic() + 30
    while found != {0, 1} and time.monotonic() < deadline:
        for instance in (0, 1):
            before = evalsha_calls()
            assert client.login(instance).status_code == 200
            if evalsha_calls() > before:
                found.add(instance)
        time.sleep(0.2)
    link.close()
    return sorted(found)


def sentinel_master(sentinel: PrivateRedis) -> dict[str, Any]:
    return redis_lib.Redis(*sentinel.address, decode_responses=True).sentinel_master(SERVICE)


def wait_for_cluster(replica: PrivateRedis, sentinels: list[PrivateRedis]) -> None:
    """The replica in sync, every sentinel aware of it and of the two other sentinels."""
    link = redis_lib.Redis(*replica.address, decode_responses=True)
    wait_for(lambda: link.info("replication")["master_link_status"] == "up", 30, "replica sync")

    def aware() -> bool:
        states = [sentinel_master(s) for s in sentinels]
        return all(s["num-other-sentinels"] == 2 and s["num-slaves"] == 1 for s in states)

    wait_for(aware, 30, "sentinels aware of each other and of the replica")


def scenario(client: Client, crash) -> dict[str, Any]:
    # before: logins on both instances, a refresh of each on the other one (the first
    # refresh token is used up), then a batch of logouts, the master killed right after
    pairs = []
    for i in range(USERS):
        login = client.login(i % 2)
        assert login.status_code == 200, login.text
        pairs.append(login.json())
    used, current = [], []
    for i, pair in enumerate(pairs):
        renewed = client.refresh((i + 1) % 2, pair["refresh_token"])
        assert renewed.status_code == 200, renewed.text
        used.append(pair["refresh_token"])
        current.append(renewed.json())
    logged_out = current[: USERS // 2]
    for i, pair in enumerate(logged_out):
        assert client.logout(i % 2, pair["access_token"]).status_code == 204
    crash()  # SIGKILL
    killed = time.monotonic() - client.started

    # during and after: login, refresh, logout on alternate instances until both have
    # served 3 full rounds after the failover
    rounds = [0, 0]
    instance = 0
    deadline = time.monotonic() + 60
    while min(rounds) < 3:
        assert time.monotonic() < deadline, client.answers[-10:]
        instance = 1 - instance
        login = client.login(instance)
        if login.status_code != 200:
            time.sleep(0.1)
            continue
        renewed = client.refresh(1 - instance, login.json()["refresh_token"])
        if renewed.status_code != 200:
            continue
        used.append(login.json()["refresh_token"])
        if client.logout(instance, renewed.json()["access_token"]).status_code == 204:
            logged_out.append(renewed.json())
            rounds[instance] += 1

    # not one logged-out token or used refresh token accepted again, by either instance
    refused = []
    for instance in (0, 1):
        for pair in logged_out:
            refused.append(client.call(instance, "GET", "/profile", pair["access_token"]))
            refused.append(client.refresh(instance, pair["refresh_token"]))
        refused += [client.refresh(instance, token) for token in used]
    after = [a for a in client.answers if a[0] > killed]
    first_login = min(a[0] for a in after if a[2] == "POST /auth/login" and a[3] == 200)
    return {"answers": client.answers, "after kill": after,
            "failover seconds": first_login - killed,
            "refused": [(r.status_code, r.json().get("code")) for r in refused]}


def test_service_resumes_after_the_failover_without_restart_or_500(failover):
    """After the master's SIGKILL the sentinels promote the replica; both instances serve
    logins, refreshes and logouts all along (the rate limit counts per worker meanwhile),
    then count their logins in the new master again, without a restart; never a 500."""
    after = failover["after kill"]
    assert failover["restarted"] == [False, False]
    assert failover["new master"] == failover["replica"]
    assert failover["through the new master"] == [0, 1]
    statuses = {a[3] for a in failover["answers"]}
    assert 500 not in statuses and statuses <= {200, 204, 401, 503}, statuses
    unavailable = [a for a in after if a[3] == 503]
    assert all(a[4] and a[5] == "store_unavailable" for a in unavailable), unavailable
    served = {(a[1], a[2]) for a in after if a[3] in (200, 204)}
    assert served >= {(i, what) for i in (0, 1) for what in
                      ("POST /auth/login", "POST /auth/refresh", "POST /auth/logout")}, served
    assert failover["failover seconds"] < 15, failover["failover seconds"]
    assert "Traceback" not in failover["output"], failover["output"]
    print(f"\nSentinel failover: first login {failover['failover seconds']:.2f} s after the "
          f"master's SIGKILL; {len(unavailable)} answers 503 store_unavailable meanwhile; "
          f"{len(after)} requests after the kill")


def test_no_logged_out_or_used_token_is_accepted_after_the_failover(failover):
    """Every logged-out access and refresh token, and every used refresh token, is refused
    (401) by both instances after the failover, though the promoted replica lost the last
    revocations."""
    assert failover["refused"] and {status for status, _ in failover["refused"]} == {401}, \
        sorted(set(failover["refused"]))


# --- the URL ----------------------------------------------------------------------------------

def test_store_through_a_sentinel_with_password_and_database(redis_server_binary):
    """``redis+sentinel://:password@host:port/service/db``: the password (percent-escapes
    decoded) opens the sentinel and the master, the store writes into database `db` of the
    master the sentinel names; a wrong password is StoreUnavailable, never quoted."""
    password = "s3cret/pass@word"
    with PrivateRedis() as master, PrivateRedis(
            config=sentinel_config(master.port).replace(" 2\n", " 1\n", 1),  # quorum 1
            extra_args=("--sentinel",)) as sentinel:
        watcher = redis_lib.Redis(*sentinel.address)
        watcher.sentinel_set(SERVICE, "auth-pass", password)
        redis_lib.Redis(*master.address).config_set("requirepass", password)
        watcher.acl_setuser("default", enabled=True, reset_passwords=True, passwords=[
            "+" + password], commands=["+@all"], keys=["*"], channels=["*"])
        url = f"redis+sentinel://:s3cret%2Fpass%40word@127.0.0.1:{sentinel.port}/{SERVICE}"
        store = RedisStore(url + "/3", "t:", socket_timeout=1.0)
        assert store.set("k", "v", 60) and store.get("k") == "v"
        assert redis_lib.Redis(*master.address, password=password, db=3).get("t:k") == b"v"
        wrong = RedisStore(url.replace("s3cret", "nope"), socket_timeout=1.0)
        with pytest.raises(StoreUnavailable) as failed:
            wrong.get("k")
        assert "nope" not in str(failed.value) and "s3cret" not in str(failed.value)


@pytest.mark.parametrize("value,expected", [
    ("redis+sentinel://:hunter2@s1:26379,s2/mymaster",
     "REDIS_URL='redis+sentinel://:***@s1:26379,s2/mymaster' is malformed (sentinel address "
     "'s2' is not host:port)"),
    ("redis+sentinel://s1:26379,s2:26379", "no service name after the sentinels' addresses"),
    ("redis+sentinel://admin:hunter2@s1:26379/mymaster/one",
     "REDIS_URL='redis+sentinel://admin:***@s1:26379/mymaster/one' is malformed (database "
     "'one' is not a number)"),
    ("redis+sentinel://hunter2@s1:port/mymaster", "'redis+sentinel://***@s1:port/mymaster'"),
    ("redis+sentinel://s1:26379/mymaster?db=1", "takes no ?query"),
])
def test_a_malformed_sentinel_url_says_what_to_write(app_config, value, expected):
    problems = problems_of({**app_config, "REDIS_URL": value})
    assert len(problems) == 1 and expected in problems[0], problems
    assert "redis+sentinel://sentinel-1:26379,sentinel-2:26379,sentinel-3:26379/mymaster" \
        in problems[0]
    assert "hunter2" not in problems[0]


def test_a_sentinel_url_is_the_rate_limit_storage_unchanged():
    url = "redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26379/mymaster"
    cfg = {"REDIS_URL": url}
    config._redis(cfg)
    assert cfg["RATELIMIT_STORAGE_URI"] == url

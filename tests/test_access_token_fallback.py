"""Issue 22, "Redis down": while the shared store fails, the WeChat access_token is fetched
per process with getStableAccessToken (never the classic endpoint, which would invalidate
every other process's token), one WARNING per outage, counted in
``wxauth_store_fallbacks_total{use="access_token"}``; once Redis answers again the shared
cache is used again. Real redis-server processes (killed, stalled through a relay), the
emulator over HTTP counting the fetches, and gunicorn as shipped."""

from __future__ import annotations

import logging
import time

import pytest
import redis as redis_lib
import requests
from prometheus_client import REGISTRY

from faults import PrivateRedis, Relay
from helpers import APPID, SECRET, emulator_post, emulator_stats, free_port
from test_metrics import METRICS_TOKEN, scrape, value
from test_resilience_gunicorn import ONE_SHOT, start_gunicorn
from test_sentinel import redis_server_binary  # noqa: F401  (fixture)
from test_wechat_apis import own_emulator  # noqa: F401  (fixture)
from wxauth.infra.store import RedisStore
from wxauth.wechat import client as wx
from wxauth.wechat.access_token import AccessTokenManager

PREFIX = "wxauth:"
KEY = f"wechat:access_token:{APPID}"
WARNING = "the shared store failed"


def fallbacks() -> float:
    return REGISTRY.get_sample_value("wxauth_store_fallbacks_total", {"use": "access_token"}) or 0


def manager(emulator_url: str, store: RedisStore, **options) -> AccessTokenManager:
    """A token manager as one process has it: its own WeChat client, the shared store."""
    return AccessTokenManager(wx.WeChatClient(APPID, SECRET, base_url=emulator_url), store,
                              **options)


def test_redis_down_each_process_fetches_a_stable_token_once(own_emulator, caplog,
                                                            redis_server_binary):
    """Two "processes" configured for the classic token share a Redis that is killed: each
    fetches one stable token (the classic fetch count stays at 1, the earlier classic token
    still works), logs one WARNING and counts every token it serves; the tokens work at
    WeChat. Redis back (empty): the shared cache is filled again by one fetch, which the
    other process then uses."""
    url = own_emulator.url
    with PrivateRedis() as redis_server:
        store = RedisStore(redis_server.url, PREFIX, socket_timeout=0.5)
        a, b = (manager(url, store, stable=False, store_retry=0.5) for _ in range(2))
        classic = a.get()
        assert b.get() == classic
        assert emulator_stats(url)["token_fetches"] == 1

        redis_server.stop()  # SIGKILL
        before = fallbacks()
        with caplog.at_level(logging.INFO, logger="wxauth.wechat.access_token"):
            tokens = {m.get() for m in (a, b) for _ in range(5)}
        stats = emulator_stats(url)
        assert (stats["token_fetches"], stats["stable_token_fetches"]) == (1, 2), stats
        assert len(tokens) == 1 and classic not in tokens  # getStableAccessToken's one token
        assert fallbacks() - before == 10
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert [WARNING in r.getMessage() for r in warnings] == [True, True], caplog.text
        ours = " ".join(r.getMessage() for r in caplog.records if r.name.startswith("wxauth"))
        assert SECRET not in ours and classic not in ours and not tokens & set(ours.split())
        client = a.client
        for token in (*tokens, classic):
            code = emulator_post(url, "/dev/phone-code", {})["code"]
            assert client.get_phone_number(token, code).phone_number == "13800138000"

        redis_server.start()  # same port, empty
        time.sleep(0.5)  # store_retry
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="wxauth.wechat.access_token"):
            shared = a.get()
            assert b.get() == shared
        assert emulator_stats(url)["token_fetches"] == 2  # one classic fetch, shared
        assert redis_lib.Redis.from_url(redis_server.url).get(PREFIX + KEY)
        assert fallbacks() - before == 10
        assert "is shared again" in caplog.text


def test_a_silent_redis_costs_one_timeout_per_store_retry(own_emulator, redis_server_binary):
    """Redis accepts but never answers: the first get() waits for the store's timeout (and
    its one retry), then answers from this process's token; the next ones within
    `store_retry` do not ask Redis at all."""
    timeout = 0.5
    with PrivateRedis() as redis_server, Relay(redis_server.url) as relay:
        store = RedisStore(relay.rewrite(redis_server.url), PREFIX, socket_timeout=timeout)
        tokens = manager(own_emulator.url, store, store_retry=30)
        shared = tokens.get()
        relay.drop_connections()
        relay.mode = "stall"
        started = time.monotonic()
        assert tokens.get() == shared  # the emulator's stable token is the same one
        first = time.monotonic() - started
        started = time.monotonic()
        for _ in range(20):
            assert tokens.get() == shared
        rest = time.monotonic() - started
    assert timeout <= first < 4 * timeout + 1, first
    assert rest < 0.5, rest
    assert emulator_stats(own_emulator.url)["stable_token_fetches"] == 2


def test_check_session_key_keeps_working_while_redis_is_down(production_env, own_emulator,
                                                             redis_server_binary):
    """gunicorn as shipped (2 gevent workers): GET /auth/session (checkSessionKey, which needs
    the access_token) answers 200 before, while and after Redis is down; WeChat is asked
    for a token at most once per worker during the outage; /metrics counts the fallbacks;
    the log has at most one WARNING per worker. Redis back: the shared cache again."""
    url = own_emulator.url
    with PrivateRedis() as redis_server:
        server = start_gunicorn(dict(production_env, WECHAT_API_BASE=url,
                                     REDIS_URL=redis_server.url, REDIS_TIMEOUT="0.5",
                                     METRICS_TOKEN=METRICS_TOKEN))
        try:
            code = own_emulator.mint("o-fallback")["code"]
            login = requests.post(server.url + "/auth/login", json={"code": code},
                                  headers=ONE_SHOT, timeout=30)
            assert login.status_code == 200, login.text
            auth = {"Authorization": "Bearer " + login.json()["access_token"], **ONE_SHOT}

            def session_state() -> None:
                answer = requests.get(server.url + "/auth/session", headers=auth, timeout=30)
                assert answer.status_code == 200, answer.text
                assert answer.json() == {"session_key_valid": True}

            session_state()
            assert emulator_stats(url)["stable_token_fetches"] == 1

            redis_server.stop()
            for _ in range(12):
                session_state()
            assert emulator_stats(url)["stable_token_fetches"] <= 1 + 2
            assert value(scrape(server.url), "wxauth_store_fallbacks_total",
                         use="access_token") >= 12

            redis_server.start()
            time.sleep(5)  # the manager's store_retry
            for _ in range(6):
                session_state()
            assert redis_lib.Redis.from_url(redis_server.url).get(PREFIX + KEY)
        finally:
            server.stop()
    output = server.output()
    assert 1 <= output.count(WARNING) <= 2, output
    assert "Traceback" not in output, output


def test_the_token_command_says_the_store_does_not_answer(app_config, request):
    """`flask wechat token` and `flask apps list` while Redis refuses: each app's line says
    the shared store does not answer (and that processes fetch their own), exit status 0,
    instead of a traceback."""
    app_config.update(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", REDIS_TIMEOUT=0.5)
    runner = request.getfixturevalue("app").test_cli_runner()
    for args in (["wechat", "token"], ["apps", "list"]):
        result = runner.invoke(args=args)
        assert result.exit_code == 0, (args, result.output, result.exception)
        assert "the shared store does not answer" in result.output, (args, result.output)
        assert "getStableAccessToken" in result.output

"""Tests of the fault-injection toolkit (tests/faults.py) itself, on real sockets and real
server processes: a Relay in front of a small TCP echo server, a PrivateRedis, a
PrivatePostgres. The server tests skip when their binaries are missing."""

from __future__ import annotations

import os
import socket
import socketserver
import threading
import time

import pytest

from faults import PrivatePostgres, PrivateRedis, Relay, free_port


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self):
        while data := self.request.recv(65536):
            self.request.sendall(data)


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


@pytest.fixture
def echo():
    """A threaded TCP echo server on 127.0.0.1; echoes until EOF, then closes."""
    server = _EchoServer(("127.0.0.1", 0), _EchoHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield server.server_address
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def relay(echo):
    with Relay(echo) as relay:
        yield relay


def connect(relay: Relay, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(relay.address, timeout=timeout)


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError(f"EOF after {len(data)} of {size} bytes")
        data += chunk
    return data


def echoes(sock: socket.socket, payload: bytes = b"ping") -> bool:
    sock.sendall(payload)
    return recv_exactly(sock, len(payload)) == payload


def wait_until(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def relay_threads(relay: Relay) -> list[str]:
    prefix = f"Relay:{relay.port}-"
    return [t.name for t in threading.enumerate() if t.name.startswith(prefix)]


# -- Relay --------------------------------------------------------------------------------


def test_relay_addresses(relay):
    assert relay.address == ("127.0.0.1", relay.port)
    assert relay.url_for("redis", "/0") == f"redis://127.0.0.1:{relay.port}/0"
    assert (relay.rewrite("postgresql+psycopg://postgres@127.0.0.1:5433/test?x=1")
            == f"postgresql+psycopg://postgres@127.0.0.1:{relay.port}/test?x=1")
    assert relay.rewrite("http://localhost:9/a") == f"http://127.0.0.1:{relay.port}/a"
    assert Relay.MODES == ("pass", "refuse", "stall", "delay")
    with pytest.raises(ValueError):
        relay.mode = "slow"
    with pytest.raises(ValueError):
        relay.delay = -1


def test_pass_forwards_both_ways_and_half_close(relay):
    with connect(relay) as sock:
        assert echoes(sock, b"hello")
        payload = os.urandom(2 * 1024 * 1024)  # more than the socket buffers hold
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        assert recv_exactly(sock, len(payload)) == payload
        sender.join()
        sock.shutdown(socket.SHUT_WR)  # the echo server sees EOF and closes: so do we
        assert sock.recv(10) == b""
    assert wait_until(lambda: relay.open_connections == 0)
    assert relay.accepted == 1


def test_many_concurrent_connections(relay):
    socks = [connect(relay) for _ in range(300)]
    try:
        for i, sock in enumerate(socks):
            sock.sendall(b"%05d" % i)
        for i, sock in enumerate(socks):
            assert recv_exactly(sock, 5) == b"%05d" % i
        assert relay.open_connections == 300
    finally:
        for sock in socks:
            sock.close()
    assert wait_until(lambda: relay.open_connections == 0)
    assert len(relay_threads(relay)) == 1  # just the accept thread


def test_refuse_fails_connect_fast_and_recovers_on_the_same_port(relay):
    port = relay.port
    with connect(relay) as before:
        assert relay.set_mode("refuse") == "pass"
        started = time.monotonic()
        with pytest.raises(ConnectionRefusedError):
            connect(relay)
        assert time.monotonic() - started < 1.0
        assert echoes(before)  # open connections are left alone
        for _ in range(20):  # flapping
            relay.mode = "pass"
            relay.mode = "refuse"
        with pytest.raises(ConnectionRefusedError):
            connect(relay)
        relay.mode = "pass"
        assert relay.port == port
        with connect(relay) as after:
            assert echoes(after)


def test_stall_accepts_but_never_answers(relay):
    with connect(relay) as existing:
        assert echoes(existing)
        relay.mode = "stall"
        with connect(relay) as fresh:  # connect() succeeds...
            fresh.sendall(b"anyone?")
            fresh.settimeout(0.3)
            with pytest.raises(TimeoutError):  # ...but nothing ever comes back
                fresh.recv(10)
            existing.sendall(b"held")
            existing.settimeout(0.3)
            with pytest.raises(TimeoutError):  # open connections stall too
                existing.recv(10)
            relay.mode = "pass"
            existing.settimeout(5)
            assert recv_exactly(existing, 4) == b"held"  # held, not lost
            with pytest.raises(TimeoutError):  # accepted while stalled: a black hole for good
                fresh.recv(10)


def test_delay_slows_upstream_replies_once_per_chunk_not_cumulatively(relay):
    delay = 0.5
    with connect(relay) as sock:
        relay.set_mode("delay", delay=delay)
        started = time.monotonic()
        assert echoes(sock)
        elapsed = time.monotonic() - started
        assert delay <= elapsed < delay + 1.5

        started = time.monotonic()  # three chunks in a row: pipelined, not serialised
        for part in (b"a", b"b", b"c"):
            sock.sendall(part)
            time.sleep(0.05)
        assert recv_exactly(sock, 3) == b"abc"
        elapsed = time.monotonic() - started
        assert delay <= elapsed < 2.5 * delay

        relay.mode = "pass"
        started = time.monotonic()
        assert echoes(sock)
        assert time.monotonic() - started < delay

    with relay.temporarily("delay", delay=0.3), connect(relay) as sock:
        started = time.monotonic()
        assert echoes(sock)
        assert time.monotonic() - started >= 0.3
    assert (relay.mode, relay.delay) == ("pass", delay)


def test_drop_connections_closes_open_ones(relay):
    first, second = connect(relay), connect(relay)
    with first, second:
        assert echoes(first) and echoes(second)
        assert relay.drop_connections() == 2
        assert relay.open_connections == 0
        assert first.recv(10) == b""  # FIN, as from a server process that went away
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            for _ in range(50):
                second.sendall(b"x" * 1024)
                time.sleep(0.01)
    with connect(relay) as third:  # still accepting
        assert echoes(third)
        assert relay.reset() == 1
        with pytest.raises(ConnectionResetError):  # RST
            third.recv(10)


def test_unreachable_upstream_resets_the_client():
    with Relay(("127.0.0.1", free_port())) as relay:
        # (the reset can arrive before connect() has looked at its socket, on a busy machine)
        with pytest.raises(ConnectionResetError), connect(relay) as sock:
            sock.recv(10)


def test_close_stops_every_thread(echo):
    relay = Relay(echo)
    held = [connect(relay) for _ in range(3)]
    try:
        assert echoes(held[0])
        relay.set_mode("delay", delay=5)
        held[0].sendall(b"pending")  # a chunk waiting to be delayed
        time.sleep(0.1)
        relay.mode = "stall"
        held.append(connect(relay))  # a black hole
        held[-1].sendall(b"x")
        assert wait_until(lambda: relay.accepted == 4)
        assert len(relay_threads(relay)) == 1 + 3 * 2 + 1
        relay.close()
        assert relay_threads(relay) == []
        assert relay.closed
        with pytest.raises(ConnectionResetError):
            held[0].recv(10)
        with pytest.raises(ConnectionRefusedError):
            connect(relay)
        with pytest.raises(RuntimeError):
            relay.mode = "pass"
        relay.close()  # idempotent
    finally:
        relay.close()
        for sock in held:
            sock.close()


# -- PrivateRedis -------------------------------------------------------------------------


def _redis_client(url: str, timeout: float = 2.0):
    redis = pytest.importorskip("redis")
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                retry=Retry(NoBackoff(), 0))


def test_private_redis_crash_and_restart():
    import redis

    with PrivateRedis() as server:
        port = server.port
        assert server.url == f"redis://127.0.0.1:{port}/0"
        client = _redis_client(server.url)
        client.set("k", "v")
        assert client.get("k") == b"v"

        server.stop()  # SIGKILL
        assert not server.running
        with pytest.raises(redis.ConnectionError):
            client.get("k")

        server.start()
        assert server.port == port
        assert client.ping()
        assert client.get("k") is None  # no persistence: the crash lost it
        client.close()
    assert not server.running


def test_relay_in_front_of_private_redis():
    import redis

    with PrivateRedis() as server, Relay(server.url) as relay:
        client = _redis_client(relay.rewrite(server.url), timeout=0.5)
        assert client.ping()
        relay.mode = "stall"
        with pytest.raises(redis.TimeoutError):
            client.ping()
        relay.mode = "refuse"
        relay.drop_connections()
        with pytest.raises(redis.ConnectionError):
            client.ping()
        relay.mode = "pass"
        assert client.ping()
        client.close()


# -- PrivatePostgres ----------------------------------------------------------------------


def test_private_postgres_crash_and_restart():
    psycopg = pytest.importorskip("psycopg")

    with PrivatePostgres() as server:
        port = server.port
        assert server.url == f"postgresql+psycopg://postgres@127.0.0.1:{port}/test"
        assert server.dsn == f"postgresql://postgres@127.0.0.1:{port}/test"
        with psycopg.connect(server.dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute("CREATE TABLE t (v text)")
            conn.execute("INSERT INTO t VALUES ('kept')")
            assert conn.execute("SELECT current_user, current_database()").fetchone() == (
                "postgres", "test")

            server.stop()  # immediate: a crash
            assert not server.running
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(server.dsn, connect_timeout=2)

        server.start()
        assert server.port == port
        with psycopg.connect(server.dsn, connect_timeout=5) as conn:
            assert conn.execute("SELECT v FROM t").fetchall() == [("kept",)]

        with Relay(server.address) as relay:
            proxied = relay.rewrite(server.dsn)
            with psycopg.connect(proxied, connect_timeout=5) as conn:
                assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)
            relay.mode = "stall"
            started = time.monotonic()
            with pytest.raises(psycopg.OperationalError):
                psycopg.connect(proxied, connect_timeout=1)
            assert time.monotonic() - started >= 0.9
    assert not server.running


def test_private_redis_skips_without_the_binary(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pytest.skip.Exception, match="redis-server"):
        PrivateRedis()

"""Fault injection for tests: real sockets and real server processes, no mocks.

Later tests use these to prove that wxauth survives slow or broken dependencies. Everything
listens on 127.0.0.1 only, on a free port of its own (never 5432, 3306 or 6379: the shared
services there are left alone). All durations and timeouts are in seconds (floats).

`Relay`
    A TCP relay in front of any upstream (the WeChat emulator, Redis, PostgreSQL, ...), whose
    behaviour can be switched while it runs: ``"pass"`` (forward), ``"refuse"`` (connect()
    fails with ECONNREFUSED), ``"stall"`` (accepts, never answers) and ``"delay"`` (every
    upstream → client chunk arrives `delay` seconds late). `drop_connections()` / `reset()`
    cut every open connection, as a server restart would.

`PrivateRedis`
    A throwaway ``redis-server`` subprocess (no persistence) that can be killed (SIGKILL, a
    crash) and started again on the same port.

`PrivatePostgres`
    A throwaway PostgreSQL cluster (``initdb`` + ``pg_ctl``, trust auth, database ``test``)
    that can be stopped (``immediate`` by default: a crash, recovered on restart) and started
    again on the same port. Run as root, the server runs as the ``postgres`` system user.

The two server classes call ``pytest.skip`` when their binaries (or, for PostgreSQL under
root, the ``postgres`` user) are missing. All three are context managers; leaving the
``with`` block (or `close()`) stops threads and processes and removes temporary files.
Processes still running at interpreter exit are stopped then too.

Example::

    with PrivateRedis() as redis_server, Relay(redis_server.url) as relay:
        app_config["REDIS_URL"] = relay.rewrite(redis_server.url)
        ...
        relay.mode = "stall"          # Redis accepts but never answers
        with relay.temporarily("delay", delay=2.0):
            ...                       # Redis answers, two seconds late
        redis_server.stop()           # crash (SIGKILL)
        redis_server.start()          # back, empty, same port
"""

from __future__ import annotations

import collections
import contextlib
import errno
import glob
import os
import pwd
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from helpers import free_port

__all__ = ["Relay", "PrivateRedis", "PrivatePostgres", "free_port"]

LOOPBACK = "127.0.0.1"
_CHUNK = 64 * 1024
_SLICE = 0.1  # how often a thread blocked on a full send buffer re-checks for shutdown
_LINGER_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, not FIN


def _parse_address(upstream: tuple[str, int] | str) -> tuple[str, int]:
    """(host, port) from a (host, port) pair, "host:port" or a URL with an explicit port."""
    if isinstance(upstream, tuple):
        host, port = upstream
        return str(host), int(port)
    text = upstream if "://" in upstream else f"tcp://{upstream}"
    parts = urlsplit(text)
    if not parts.hostname or parts.port is None:
        raise ValueError(f"need an explicit host and port in {upstream!r}")
    return parts.hostname, parts.port


def _abort(sock: socket.socket) -> None:
    """Close with RST."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    sock.close()


def _is_listening(sock: socket.socket) -> bool:
    try:
        return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
    except (AttributeError, OSError):
        return True  # unknown: assume the worst


class _Connection:
    """One relayed client connection. Guarded by the relay's condition variable."""

    __slots__ = ("client", "upstream", "closing", "workers")

    def __init__(self, client: socket.socket):
        self.client = client
        self.upstream: socket.socket | None = None
        self.closing = False  # set once: every worker thread of this connection must exit
        self.workers = 0  # threads still using the sockets; the last one closes them


class Relay:
    """A TCP relay on 127.0.0.1:<free port> in front of `upstream`, switchable at runtime.

    ``Relay(upstream, *, mode="pass", delay=0.0, port=None, connect_timeout=5.0)``

    `upstream` is ``(host, port)``, ``"host:port"`` or a URL with an explicit port
    (``"redis://127.0.0.1:6380/0"``). Point the code under test at `address`,
    ``url_for(scheme, path)`` or ``rewrite(upstream_url)``.

    Modes (set ``relay.mode = ...`` or ``relay.set_mode(mode, delay=...)``, from any thread;
    the change is in effect when the call returns):

    ``"pass"``
        Bytes are forwarded both ways, as they come.
    ``"refuse"``
        The relay stops listening, so a new connect() fails at once with ECONNREFUSED, as
        with a server that is down. The listening socket is *not* closed: on Linux
        ``shutdown(SHUT_RD)`` on a listening socket takes it out of the LISTEN state while it
        stays bound, so it keeps the port (nobody else can take it) and ``listen()`` on it
        again resumes on the same port. Elsewhere, the socket is closed and re-bound with
        SO_REUSEADDR on leaving "refuse" (which fails only if another process took the port
        meanwhile). Connections already open are left alone (use `drop_connections()` too
        for "the server went down"); so are those whose connect() had returned before the
        switch: the switch first waits (at most 1 s) for the kernel's accept queue to drain.
    ``"stall"``
        New connections are accepted but never connected upstream: what the client sends is
        read and discarded, nothing is ever answered, and the connection stays open until
        the client gives up (or `drop_connections()`); it stays a black hole even after
        the mode changes. Open connections stop forwarding in both directions: their bytes
        are held (not lost) and flow again when the mode leaves "stall".
    ``"delay"``
        Like "pass", but each chunk coming from upstream is sent on to the client `delay`
        seconds after the relay received it. Chunks are pipelined, not serialised: a
        response that arrives in several chunks is late by `delay` once, not once per chunk.
        Client → upstream bytes are not delayed. `delay` can be changed at any time
        (``relay.delay = 2.5``); it applies to chunks received afterwards.

    If the upstream cannot be reached (connect() fails or takes over `connect_timeout`),
    the accepted client connection is reset (RST). An error on either side of a relayed
    connection resets the other side too.

    `drop_connections()` closes every open relayed connection (FIN, like a server process
    that exits; ``rst=True`` for RST) and `reset()` does the same with RST. Both return how
    many connections they closed, once their sockets are closed.

    Threads: one accepts; each relayed connection has two (one per direction, one for a
    black-holed connection). They are daemon threads named ``Relay:<port>...``, and
    `close()` (or leaving the ``with`` block) shuts every socket down and joins them.
    Tested with hundreds of concurrent connections (mind ``ulimit -n``: two descriptors
    per connection).
    """

    MODES = ("pass", "refuse", "stall", "delay")

    def __init__(self, upstream: tuple[str, int] | str, *, mode: str = "pass",
                 delay: float = 0.0, port: int | None = None, connect_timeout: float = 5.0,
                 backlog: int = 1024):
        self.upstream: tuple[str, int] = _parse_address(upstream)
        self.host = LOOPBACK
        self.connect_timeout = float(connect_timeout)
        self.accepted = 0  # connections accepted so far (all modes)
        self._delay = 0.0
        self.delay = delay
        self._backlog = backlog
        self._cond = threading.Condition()
        self._mode = "pass"
        self._closed = False
        self._conns: set[_Connection] = set()
        self._threads: set[threading.Thread] = set()
        self._listener: socket.socket | None = self._bind(port)
        self.port: int = self._listener.getsockname()[1]
        self._listener.listen(backlog)
        self._spawn(self._accept_loop, name="accept")
        self.set_mode(mode)

    # -- public API -------------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """``("127.0.0.1", port)``: where clients connect."""
        return self.host, self.port

    def url_for(self, scheme: str = "http", path: str = "") -> str:
        """``f"{scheme}://127.0.0.1:{port}{path}"``, e.g. ``url_for("redis", "/0")``."""
        return f"{scheme}://{self.host}:{self.port}{path}"

    def rewrite(self, url: str) -> str:
        """`url` with its host:port replaced by the relay's (user, path, query are kept):
        ``rewrite("postgresql+psycopg://postgres@127.0.0.1:5433/test")`` →
        ``"postgresql+psycopg://postgres@127.0.0.1:<relay port>/test"``."""
        parts = urlsplit(url)
        userinfo, at, _ = parts.netloc.rpartition("@")
        return urlunsplit(parts._replace(netloc=f"{userinfo}{at}{self.host}:{self.port}"))

    @property
    def mode(self) -> str:
        """The current mode; assigning to it is ``set_mode(value)``."""
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        self.set_mode(value)

    @property
    def delay(self) -> float:
        """Seconds added to each upstream → client chunk in "delay" mode."""
        return self._delay

    @delay.setter
    def delay(self, value: float) -> None:
        value = float(value)
        if not value >= 0:
            raise ValueError(f"delay must be >= 0 seconds, not {value!r}")
        self._delay = value

    def set_mode(self, mode: str, *, delay: float | None = None) -> str:
        """Switch to `mode` (and set `delay` if given); return the previous mode."""
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, not {mode!r}")
        if delay is not None:
            self.delay = delay
        if mode == "refuse":
            self._drain_backlog()
        with self._cond:
            if self._closed:
                raise RuntimeError("the relay is closed")
            previous = self._mode
            self._mode = mode
            if mode == "refuse" and previous != "refuse":
                self._stop_listening()
            elif mode != "refuse" and previous == "refuse":
                self._start_listening()
            self._cond.notify_all()
            return previous

    @contextlib.contextmanager
    def temporarily(self, mode: str, *, delay: float | None = None) -> Iterator[Relay]:
        """``with relay.temporarily("stall"): ...`` then back to the previous mode and delay."""
        saved_delay = self.delay
        previous = self.set_mode(mode, delay=delay)
        try:
            yield self
        finally:
            if not self._closed:
                self.set_mode(previous, delay=saved_delay)

    @property
    def open_connections(self) -> int:
        """How many relayed connections are open right now."""
        with self._cond:
            return len(self._conns)

    def drop_connections(self, *, rst: bool = False, timeout: float = 5.0) -> int:
        """Close every open relayed connection, both sides (FIN; RST with ``rst=True``).

        Returns the number of connections closed, after their sockets are closed (waiting at
        most `timeout` seconds for their threads). New connections are still accepted.
        """
        with self._cond:
            doomed = list(self._conns)
            for conn in doomed:
                self._shut(conn, rst=rst)
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._conns.isdisjoint(doomed), timeout)
        return len(doomed)

    def reset(self, *, timeout: float = 5.0) -> int:
        """`drop_connections` with RST: clients see ECONNRESET, as after a crash."""
        return self.drop_connections(rst=True, timeout=timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop listening, reset every connection and join every thread (idempotent)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            listener = self._listener
            if listener is not None:
                with contextlib.suppress(OSError):
                    listener.shutdown(socket.SHUT_RD)  # wakes accept()
            for conn in self._conns:
                self._shut(conn, rst=True)
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                threads = list(self._threads)
            if not threads:
                break
            for thread in threads:
                if thread.ident is None:  # registered by _spawn, started right after it
                    time.sleep(0.01)
                    continue
                thread.join(max(0.0, deadline - time.monotonic()))
            if time.monotonic() >= deadline:
                break
        with self._cond:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            leftover = [t.name for t in self._threads]
        if leftover:
            raise RuntimeError(f"relay threads still running after {timeout} s: {leftover}")

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else self._mode
        return (f"<Relay {self.host}:{self.port} -> {self.upstream[0]}:{self.upstream[1]} "
                f"{state} delay={self._delay}>")

    # -- listening socket -------------------------------------------------------------------

    def _bind(self, port: int | None) -> socket.socket:
        """A socket bound to 127.0.0.1:`port` (a free one if None), not yet listening.

        The port is bound explicitly (not port 0): only then does Linux keep it bound when
        the socket leaves the LISTEN state (see "refuse")."""
        attempts = 1 if port else 20
        for attempt in range(attempts):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.host, port or free_port()))
                return sock
            except OSError as exc:
                sock.close()
                if exc.errno != errno.EADDRINUSE or attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _drain_backlog(self, timeout: float = 1.0) -> None:
        """Wait (at most `timeout` s) until the accept thread has taken every connection
        already in the kernel's accept queue, so that a client whose connect() returned
        before "refuse" was set keeps its connection."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                listener = self._listener
                if self._closed or self._mode == "refuse" or listener is None:
                    return
                poller = select.poll()
                poller.register(listener, select.POLLIN)
                if not poller.poll(0):
                    return
            time.sleep(0.002)

    def _stop_listening(self) -> None:  # with self._cond held
        listener = self._listener
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RD)  # Linux: LISTEN -> CLOSE, port kept, accept() woken
        if _is_listening(listener):  # not Linux: close it, bind again when leaving "refuse"
            listener.close()
            self._listener = None

    def _start_listening(self) -> None:  # with self._cond held
        if self._listener is not None:
            try:
                self._listener.listen(self._backlog)
                return
            except OSError:
                self._listener.close()
                self._listener = None
        sock = self._bind(self.port)
        sock.listen(self._backlog)
        self._listener = sock

    # -- threads ----------------------------------------------------------------------------

    def _spawn(self, target, *args, name: str, conn: _Connection | None = None) -> None:
        """Start a daemon thread; with `conn`, count it as one of that connection's workers."""
        def run():
            try:
                target(*args)
            finally:
                if conn is not None:
                    self._release(conn)
                with self._cond:
                    self._threads.discard(threading.current_thread())
                    self._cond.notify_all()

        thread = threading.Thread(target=run, name=f"Relay:{self.port}-{name}", daemon=True)
        with self._cond:
            self._threads.add(thread)
            if conn is not None:
                conn.workers += 1
        try:
            thread.start()
        except BaseException:  # e.g. "can't start new thread": undo the bookkeeping
            with self._cond:
                self._threads.discard(thread)
            if conn is not None:
                self._shut(conn, rst=True)
                self._release(conn)
            raise

    def _accept_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or self._mode != "refuse")
                if self._closed:
                    return
                listener = self._listener
            try:
                client, _ = listener.accept()
            except OSError as exc:
                if self._closed:
                    return
                # EINVAL: we stopped listening ("refuse"); EMFILE etc.: out of resources.
                if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ECONNABORTED):
                    time.sleep(0.05)
                continue
            with self._cond:
                if self._closed:
                    _abort(client)
                    continue
                # Accepted: it connected while we listened, so even if "refuse" was set
                # since, it is served like the connections that were already open.
                black_hole = self._mode == "stall"
                conn = _Connection(client)
                self._conns.add(conn)
                self.accepted += 1
                number = self.accepted
            with contextlib.suppress(OSError):
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                if black_hole:
                    self._spawn(self._swallow, conn, name=f"{number}-stall", conn=conn)
                else:
                    self._spawn(self._serve, conn, number, name=f"{number}-c2u", conn=conn)
            except RuntimeError:
                time.sleep(0.05)  # could not start a thread; that connection was reset

    def _serve(self, conn: _Connection, number: int) -> None:
        """Connect upstream, then pump client → upstream here and upstream → client in a
        second thread."""
        upstream = self._connect_upstream(conn)
        if upstream is None:
            self._shut(conn, rst=True)
            return
        with self._cond:
            if conn.closing:
                _abort(upstream)
                return
            conn.upstream = upstream
        try:
            self._spawn(self._pump, conn, upstream, conn.client, True, name=f"{number}-u2c",
                        conn=conn)
        except RuntimeError:
            return  # could not start a thread: the connection was reset
        self._pump(conn, conn.client, upstream, False)

    def _connect_upstream(self, conn: _Connection) -> socket.socket | None:
        """A connected, blocking socket to the upstream, or None (failed, or dropped)."""
        deadline = time.monotonic() + self.connect_timeout
        try:
            infos = socket.getaddrinfo(*self.upstream, type=socket.SOCK_STREAM)
        except OSError:
            return None
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                status = sock.connect_ex(address)
                if status not in (0, errno.EINPROGRESS):
                    raise OSError(status, os.strerror(status))
                poller = select.poll()
                poller.register(sock, select.POLLOUT)
                while status:
                    if conn.closing or time.monotonic() >= deadline:
                        raise TimeoutError
                    if poller.poll(_SLICE * 1000):
                        status = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if status:
                            raise OSError(status, os.strerror(status))
                        break
                sock.setblocking(True)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return sock
            except OSError:
                sock.close()
        return None

    def _pump(self, conn: _Connection, src: socket.socket, dst: socket.socket,
              delayed: bool) -> None:
        """Forward src → dst until EOF or error, honouring "stall" and, when `delayed`,
        "delay". Each chunk gets a due time when read; chunks go out in order, when due."""
        pending: collections.deque[tuple[float, bytes]] = collections.deque()
        eof = False
        poller = select.poll()
        poller.register(src, select.POLLIN)
        try:
            while not conn.closing:
                if self._mode == "stall":
                    with self._cond:
                        self._cond.wait_for(lambda: conn.closing or self._mode != "stall")
                    continue
                now = time.monotonic()
                while pending and pending[0][0] <= now:
                    if conn.closing or self._mode == "stall":
                        break
                    if not self._send(conn, dst, pending.popleft()[1]):
                        return
                if conn.closing or self._mode == "stall":
                    continue
                wait = max(0.0, pending[0][0] - time.monotonic()) if pending else None
                if eof:
                    if not pending:
                        with contextlib.suppress(OSError):
                            dst.shutdown(socket.SHUT_WR)  # pass the half-close on
                        return
                    with self._cond:
                        self._cond.wait(wait)
                    continue
                if not poller.poll(-1 if wait is None else max(1, int(wait * 1000) + 1)):
                    continue
                if conn.closing:
                    return
                data = src.recv(_CHUNK)
                if not data:
                    eof = True
                    continue
                late = self._delay if delayed and self._mode == "delay" else 0.0
                pending.append((time.monotonic() + late, data))
        except OSError:  # reset, broken pipe, ...: reset the other side too
            self._shut(conn, rst=True)

    def _send(self, conn: _Connection, dst: socket.socket, data: bytes) -> bool:
        """sendall() that gives up (False) once the connection is being closed."""
        view = memoryview(data)
        poller = select.poll()
        poller.register(dst, select.POLLOUT)
        while view:
            if conn.closing:
                return False
            try:
                view = view[dst.send(view, socket.MSG_DONTWAIT):]
            except BlockingIOError:
                poller.poll(int(_SLICE * 1000))
        return True

    def _swallow(self, conn: _Connection) -> None:
        """A connection accepted in "stall" mode: read and discard until dropped."""
        poller = select.poll()
        poller.register(conn.client, select.POLLIN)
        try:
            while not conn.closing:
                poller.poll(-1)
                if conn.closing or not conn.client.recv(_CHUNK):
                    break
        except OSError:
            pass
        with self._cond:  # the client half-closed: stay silent, never FIN, until dropped
            self._cond.wait_for(lambda: conn.closing)

    # -- connection teardown ----------------------------------------------------------------

    def _shut(self, conn: _Connection, *, rst: bool) -> None:
        with self._cond:
            self._shut_now(conn, rst=rst)
            self._cond.notify_all()

    def _shut_now(self, conn: _Connection, *, rst: bool = True) -> None:
        """Make every worker of `conn` exit: SHUT_RD wakes poll()/recv() without sending
        anything; the last worker closes the sockets (FIN, or RST when lingering 0 s)."""
        if conn.closing:
            return
        conn.closing = True
        for sock in (conn.client, conn.upstream):
            if sock is None:
                continue
            with contextlib.suppress(OSError):
                if rst:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
                sock.shutdown(socket.SHUT_RD)

    def _release(self, conn: _Connection) -> None:
        with self._cond:
            conn.workers -= 1
            if conn.workers > 0:
                return
            conn.closing = True
            sockets = (conn.client, conn.upstream)
        for sock in sockets:
            if sock is not None:
                sock.close()
        with self._cond:
            self._conns.discard(conn)
            self._cond.notify_all()


# -- server processes -----------------------------------------------------------------------


def _clean_env(**extra: str) -> dict[str, str]:
    """os.environ without libpq's PG* variables, which would redirect the client tools."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(extra)
    return env


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class _RedisResources:
    """What a PrivateRedis must release, kept apart so a finalizer can release it."""

    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.tmpdir: str | None = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def release(self) -> None:
        self.kill()
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None


class _PrivateServer:
    """Shared by the private servers: the server's log (`LOG_NAME` in its directory),
    `close()` (kill, remove the directory; idempotent) and the context manager (start on
    enter, close on exit)."""

    LOG_NAME = ""

    @property
    def log_path(self) -> Path | None:
        return Path(self._res.tmpdir) / self.LOG_NAME if self._res.tmpdir else None

    def log(self) -> str:
        """The server's output so far (all runs)."""
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def close(self) -> None:
        self._finalizer()

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc_info) -> None:
        self.close()


class PrivateRedis(_PrivateServer):
    """A ``redis-server`` of the test's own on 127.0.0.1:<free port>, without persistence.

    ``PrivateRedis(*, port=None, startup_timeout=10.0, extra_args=(), config=None)``

    Started by ``__enter__`` or `start()`; ``pytest.skip`` if ``redis-server`` is not on
    PATH. Runs ``redis-server --port P --bind 127.0.0.1 --save "" --appendonly no
    --dir <tmpdir>`` (plus `extra_args`), its output going to ``<tmpdir>/redis.log``
    (`log()`), and is ready once it answers PING. `config`: the text of a configuration
    file, written to ``<tmpdir>/redis.conf`` on the first start and given first (a sentinel,
    ``extra_args=("--sentinel",)``, needs one: it writes its state into it).

    `stop()` kills it with SIGKILL (a crash; ``graceful=True`` sends SIGTERM); its data is
    gone. `start()` starts it again on the same port. `close()` stops it and removes the
    temporary directory. `url` is ``"redis://127.0.0.1:PORT/0"``.
    """

    LOG_NAME = "redis.log"

    def __init__(self, *, port: int | None = None, startup_timeout: float = 10.0,
                 extra_args: tuple[str, ...] | list[str] = (), config: str | None = None):
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.skip("redis-server is not on PATH")
        self.executable = executable
        self.host = LOOPBACK
        self.port: int | None = port
        self.startup_timeout = float(startup_timeout)
        self.extra_args = list(extra_args)
        self.config = config
        self._res = _RedisResources()
        self._finalizer = weakref.finalize(self, self._res.release)

    @property
    def url(self) -> str:
        """``"redis://127.0.0.1:PORT/0"`` (known once started)."""
        if self.port is None:
            raise RuntimeError("PrivateRedis has no port until started")
        return f"redis://{self.host}:{self.port}/0"

    @property
    def address(self) -> tuple[str, int]:
        if self.port is None:
            raise RuntimeError("PrivateRedis has no port until started")
        return self.host, self.port

    @property
    def running(self) -> bool:
        return self._res.proc is not None and self._res.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._res.proc.pid if self.running else None

    def start(self) -> PrivateRedis:
        """Start the server (on the same port as before, if it ran already) and wait until
        it answers PING. No-op when running."""
        if not self._finalizer.alive:
            raise RuntimeError("PrivateRedis is closed")
        if self.running:
            return self
        if self._res.tmpdir is None:
            self._res.tmpdir = tempfile.mkdtemp(prefix="faults-redis-")
            if self.config is not None:
                Path(self._res.tmpdir, "redis.conf").write_text(self.config)
        fixed = self.port is not None
        for attempt in range(1 if fixed else 5):
            port = self.port if fixed else free_port()
            problem = self._launch(port)
            if problem is None:
                self.port = port
                return self
            if fixed or "in use" not in problem:  # only a port race is worth another try
                break
        raise RuntimeError(f"redis-server did not start on port {port}: {problem}\n"
                           f"{_tail(self.log_path)}")

    def _launch(self, port: int) -> str | None:
        """Start redis-server on `port`; None once it answers PING, else why not."""
        config = [] if self.config is None else [os.path.join(self._res.tmpdir, "redis.conf")]
        args = [self.executable, *config, "--port", str(port), "--bind", self.host, "--save", "",
                "--appendonly", "no", "--dir", self._res.tmpdir, "--daemonize", "no",
                *self.extra_args]
        with open(self.log_path, "ab") as log:
            self._res.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                              stderr=subprocess.STDOUT, cwd=self._res.tmpdir)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._res.proc.poll() is not None:
                self._res.proc = None
                text = _tail(self.log_path, 5)
                return "address in use" if "in use" in text else f"exited: {text}"
            if _redis_ping((self.host, port)):
                return None
            time.sleep(0.02)
        self._res.kill()
        return f"no PONG within {self.startup_timeout} s"

    def stop(self, *, graceful: bool = False, timeout: float = 10.0) -> None:
        """Stop the server: SIGKILL (a crash) or, with ``graceful=True``, SIGTERM. Waits
        until the process is gone. No-op when not running."""
        proc = self._res.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._res.proc = None

    def __repr__(self) -> str:
        return f"<PrivateRedis {self.host}:{self.port} {'running' if self.running else 'stopped'}>"


def _redis_ping(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _postgres_bin_dir() -> str | None:
    """The newest /usr/lib/postgresql/<version>/bin with initdb and pg_ctl (Debian/Ubuntu),
    else the directory of the initdb on PATH."""
    def version(path: str) -> tuple[int, ...]:
        found = re.search(r"postgresql/([\d.]+)/bin", path)
        return tuple(int(n) for n in found.group(1).split(".") if n) if found else ()

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(os.path.dirname(os.path.realpath(initdb)))
    for directory in candidates:
        if all(os.access(os.path.join(directory, tool), os.X_OK)
               for tool in ("initdb", "pg_ctl", "postgres", "createdb")):
            return directory
    return None


class _PostgresResources:
    """What a PrivatePostgres must release, kept apart so a finalizer can release it (and
    the way to run its tools)."""

    def __init__(self, bin_dir: str, owner: pwd.struct_passwd | None):
        self.bin_dir = bin_dir
        self.owner = owner  # the user to run server tools as (we are root), else None
        self.tmpdir: str | None = None
        self.running = False

    def run(self, tool: str, *args: str, timeout: float = 120.0,
            as_server: bool = True) -> subprocess.CompletedProcess:
        """Run a tool of `bin_dir`; server tools as the postgres user when we are root.

        ``subprocess``'s ``user``/``group``/``extra_groups`` do what ``runuser -u postgres --``
        would (setgid, setgroups, setuid in the child before exec), without a PAM session."""
        kwargs = {}
        if as_server and self.owner is not None:
            kwargs = dict(user=self.owner.pw_uid, group=self.owner.pw_gid, extra_groups=[])
        env = _clean_env(LC_ALL="C", LANG="C", HOME=self.tmpdir or "/")
        return subprocess.run([os.path.join(self.bin_dir, tool), *args], env=env,
                              cwd=self.tmpdir or "/", stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout, **kwargs)

    @property
    def data(self) -> str:
        return os.path.join(self.tmpdir, "data")

    def stop(self, mode: str, timeout: float) -> subprocess.CompletedProcess | None:
        if not self.running:
            return None
        result = self.run("pg_ctl", "stop", "-D", self.data, "-m", mode, "-w",
                          "-t", str(int(timeout)), timeout=timeout + 10)
        status = self.run("pg_ctl", "status", "-D", self.data, timeout=30)
        self.running = status.returncode == 0
        return result

    def release(self) -> None:
        if self.tmpdir:
            with contextlib.suppress(Exception):
                self.stop("immediate", 30)
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None


class PrivatePostgres(_PrivateServer):
    """A PostgreSQL cluster of the test's own on 127.0.0.1:<free port>, with database `test`.

    ``PrivatePostgres(*, port=None, database="test", settings=None, startup_timeout=60.0)``

    Started by ``__enter__`` or `start()`. The first start runs ``initdb -U postgres -A trust
    -E UTF8 --locale=C -N`` in a temporary directory, then ``pg_ctl start``, then
    ``createdb``. The server listens on 127.0.0.1 only, with its Unix socket inside that
    directory, and runs with fsync and full_page_writes off (throwaway: speed matters more;
    a committed transaction still survives a server crash, only not an OS crash).
    `settings` adds or overrides postgresql.conf settings, e.g.
    ``{"max_connections": "200"}`` (values as written in postgresql.conf, strings quoted).
    The server's log is `log()`.

    The binaries come from the newest ``/usr/lib/postgresql/<version>/bin`` (Debian), else
    from the ``initdb`` on PATH; ``pytest.skip`` if there are none. PostgreSQL refuses to run
    as root: when the tests run as root (``os.geteuid() == 0``), ``initdb`` and ``pg_ctl``
    run as the ``postgres`` system user (``pytest.skip`` if there is no such user, or it
    cannot write to the temporary directory, which is chown'ed to it).

    `stop()` is ``pg_ctl stop -m immediate`` by default: the postmaster quits at once
    without a checkpoint, as in a crash; committed data survives (crash recovery on the next
    start). ``mode="fast"`` or ``"smart"`` for a clean shutdown. `start()` starts it again on
    the same port. `close()` stops it and removes the directory.

    `url` is the SQLAlchemy URL ``"postgresql+psycopg://postgres@127.0.0.1:PORT/test"``;
    `dsn` is the libpq one for ``psycopg.connect``, ``"postgresql://postgres@127.0.0.1:PORT/test"``.
    """

    LOG_NAME = "postgres.log"

    def __init__(self, *, port: int | None = None, database: str = "test",
                 settings: dict[str, str] | None = None, startup_timeout: float = 60.0):
        bin_dir = _postgres_bin_dir()
        if bin_dir is None:
            pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found in "
                        "/usr/lib/postgresql/*/bin or on PATH")
        self.bin_dir = bin_dir
        self.host = LOOPBACK
        self.port: int | None = port
        self.database = database
        self.user = "postgres"
        self.settings = dict(settings or {})
        self.startup_timeout = float(startup_timeout)
        self._owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self._owner = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root, and PostgreSQL refuses to run as root, but "
                            "there is no 'postgres' system user to run it as")
        self._res = _PostgresResources(bin_dir, self._owner)
        self._finalizer = weakref.finalize(self, self._res.release)

    # -- public API -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """SQLAlchemy URL: ``postgresql+psycopg://postgres@127.0.0.1:PORT/test``."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self._known_port()}/{self.database}"

    @property
    def dsn(self) -> str:
        """libpq URL (psycopg.connect): ``postgresql://postgres@127.0.0.1:PORT/test``."""
        return f"postgresql://{self.user}@{self.host}:{self._known_port()}/{self.database}"

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self._known_port()

    @property
    def running(self) -> bool:
        return self._res.running

    def start(self) -> PrivatePostgres:
        """Start the server (creating the cluster and database on first use; same port as
        before afterwards) and wait until it accepts connections. No-op when running."""
        if not self._finalizer.alive:
            raise RuntimeError("PrivatePostgres is closed")
        if self._res.running:
            return self
        first = self._res.tmpdir is None
        if first:
            self._init_cluster()
        fixed = self.port is not None
        for attempt in range(1 if fixed else 5):
            port = self.port if fixed else free_port()
            result = self._pg_ctl_start(port)
            if result.returncode == 0:
                self.port = port
                break
            log = _tail(self.log_path, 10)
            if fixed or "already in use" not in log or attempt == 4:
                raise RuntimeError(f"pg_ctl start failed (port {port}):\n{result.stdout}"
                                   f"{result.stderr}\n{log}")
        if first:
            self._createdb()
        return self

    def stop(self, mode: str = "immediate", *, timeout: float = 60.0) -> None:
        """``pg_ctl stop -m <mode>``: "immediate" (a crash), "fast" or "smart". No-op when
        not running."""
        if mode not in ("immediate", "fast", "smart"):
            raise ValueError(f"mode must be immediate, fast or smart, not {mode!r}")
        result = self._res.stop(mode, timeout)
        if result is not None and self._res.running:
            raise RuntimeError(f"pg_ctl stop -m {mode} failed:\n{result.stdout}{result.stderr}")

    def __repr__(self) -> str:
        return (f"<PrivatePostgres {self.host}:{self.port} "
                f"{'running' if self.running else 'stopped'}>")

    # -- internals --------------------------------------------------------------------------

    def _known_port(self) -> int:
        if self.port is None:
            raise RuntimeError("PrivatePostgres has no port until started")
        return self.port

    def _run(self, tool: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self._res.run(tool, *args, **kwargs)

    def _init_cluster(self) -> None:
        tmpdir = tempfile.mkdtemp(prefix="faults-postgres-")
        self._res.tmpdir = tmpdir
        sockets = os.path.join(tmpdir, "sockets")
        os.mkdir(sockets, 0o700)
        Path(tmpdir, self.LOG_NAME).touch()
        if self._owner is not None:
            for path in (tmpdir, sockets, os.path.join(tmpdir, self.LOG_NAME)):
                os.chown(path, self._owner.pw_uid, self._owner.pw_gid)
            probe = subprocess.run(["test", "-w", tmpdir, "-a", "-x", tmpdir],
                                   user=self._owner.pw_uid, group=self._owner.pw_gid,
                                   extra_groups=[])
            if probe.returncode != 0:
                self.close()
                pytest.skip(f"running as root, and the postgres user cannot reach {tmpdir} "
                            f"(a parent directory is not searchable by others?): "
                            f"set TMPDIR to a directory it can reach")
        result = self._run("initdb", "-D", self._res.data, "-U", self.user, "-A", "trust",
                           "-E", "UTF8", "--locale=C", "-N")
        if result.returncode != 0:
            self.close()
            raise RuntimeError(f"initdb failed:\n{result.stdout}{result.stderr}")
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{sockets}'",
            "fsync": "off",  # commits still reach the OS: a server crash loses nothing
            "full_page_writes": "off",
            **self.settings,
        }
        with open(os.path.join(self._res.data, "postgresql.conf"), "a") as conf:
            conf.write("\n# tests/faults.py PrivatePostgres\n")
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def _pg_ctl_start(self, port: int) -> subprocess.CompletedProcess:
        result = self._run("pg_ctl", "start", "-D", self._res.data, "-l", str(self.log_path),
                           "-w", "-t", str(int(self.startup_timeout)), "-o", f"-p {port}",
                           timeout=self.startup_timeout + 30)
        self._res.running = result.returncode == 0
        if not self._res.running:  # a postmaster that did start but was too slow: stop it
            with contextlib.suppress(Exception):
                self._res.running = True
                self._res.stop("immediate", 30)
        return result

    def _createdb(self) -> None:
        result = self._run("createdb", "-h", self.host, "-p", str(self.port), "-U", self.user,
                           self.database, timeout=60, as_server=False)
        if result.returncode != 0:
            self.close()
            raise RuntimeError(f"createdb {self.database} failed:\n{result.stdout}"
                               f"{result.stderr}")

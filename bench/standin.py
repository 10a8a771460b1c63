"""A fast stand-in for WeChat's code2Session, for benchmarks only (asyncio, no framework).

``GET /sns/jscode2session?…&js_code=<openid>.<anything>`` answers like WeChat (text/plain
JSON, no errcode) with that openid and a session_key derived from it, so a benchmark can
pre-compute encryptedData.

WeChat's latency is settable: ``--delay MS`` at start, or ``POST /control`` with a JSON body
``{"delay_ms": n, "stall": true|false}`` (either key optional; the answer is the settings).
A delayed answer waits in ``asyncio.sleep``, so the delay holds up no other connection. While
``stall`` is on, requests are read but none is answered; switching it off answers the waiting
ones (each no earlier than its delay after it arrived).

``GET /stats`` → ``{"connections", "requests", "pending", "delay_ms", "stall"}``: connections
accepted and API requests read so far, API requests waiting for their answer now.

    python bench/standin.py PORT [--delay MS]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
from urllib.parse import parse_qs, urlsplit

stats = {"connections": 0, "requests": 0, "pending": 0}
settings = {"delay_ms": 0.0, "stall": False}
released: asyncio.Event  # set while not stalled (made in main, inside the loop)


def openid_for(code: str) -> str:
    """The openid a code logs in as: the code up to its first dot."""
    return code.split(".", 1)[0] or "o-empty"


def session_key_for(openid: str) -> str:
    return base64.b64encode(hashlib.sha256(openid.encode()).digest()[:16]).decode()


def control(body: bytes) -> dict:
    """Apply ``{"delay_ms": n, "stall": bool}``; ValueError when malformed."""
    change = json.loads(body or b"{}")
    if not isinstance(change, dict):
        raise ValueError("a JSON object is expected")
    if "delay_ms" in change:
        delay = float(change["delay_ms"])
        if delay < 0:
            raise ValueError("delay_ms must not be negative")
        settings["delay_ms"] = delay
    if "stall" in change:
        settings["stall"] = bool(change["stall"])
        if settings["stall"]:
            released.clear()
        else:
            released.set()
    return dict(settings)


def answer(method: str, target: str, body: bytes) -> tuple[int, str, bytes, bool]:
    """(status, content type, body, whether it is a WeChat API answer subject to the delay)."""
    url = urlsplit(target)
    if url.path == "/stats":
        return 200, "application/json", json.dumps({**stats, **settings}).encode(), False
    if url.path == "/control":
        if method != "POST":
            return 405, "application/json", b'{"error": "POST only"}', False
        try:
            return 200, "application/json", json.dumps(control(body)).encode(), False
        except (ValueError, TypeError) as exc:
            return 400, "application/json", json.dumps({"error": str(exc)}).encode(), False
    stats["requests"] += 1
    openid = openid_for(parse_qs(url.query).get("js_code", [""])[0])
    reply = {"session_key": session_key_for(openid), "openid": openid}
    return 200, "text/plain", json.dumps(reply).encode(), True


def response(status: int, content_type: str, body: bytes, close: bool) -> bytes:
    reason = {200: "OK", 400: "Bad Request", 405: "Method Not Allowed"}[status]
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: {'close' if close else 'keep-alive'}"
            "\r\n\r\n").encode() + body


class Responder(asyncio.Protocol):
    """HTTP/1.1 keep-alive; answers leave in request order (a delayed answer holds back the
    connection's later ones, never another connection's)."""

    def connection_made(self, transport):
        stats["connections"] += 1
        self.transport = transport
        self.buffer = b""
        self.previous: asyncio.Task | None = None  # the connection's last delayed answer

    def data_received(self, data):
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, rest = self.buffer.split(b"\r\n\r\n", 1)
            lines = head.split(b"\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip() or 0)
            if len(rest) < length:
                return  # the body is still coming
            body, self.buffer = rest[:length], rest[length:]
            parts = lines[0].decode("latin-1").split(" ")
            method, target = (parts[0], parts[1]) if len(parts) > 1 else ("GET", "/")
            status, content_type, reply, api = answer(method, target, body)
            close = b"connection: close" in head.lower()
            out = response(status, content_type, reply, close)
            if api and (settings["delay_ms"] > 0 or settings["stall"]) or self.previous:
                loop = asyncio.get_running_loop()
                self.previous = loop.create_task(self.later(
                    out, close, loop.time() + settings["delay_ms"] / 1000 if api else 0,
                    self.previous, api))
            else:
                self.transport.write(out)
            if close:
                if not self.previous:
                    self.transport.close()
                return

    async def later(self, data: bytes, close: bool, due: float, previous, api: bool):
        if api:
            stats["pending"] += 1
        try:
            while api:  # answered once its delay is over and no stall is on
                await released.wait()
                await asyncio.sleep(max(0.0, due - asyncio.get_running_loop().time()))
                if released.is_set():
                    break
            if previous is not None:
                await previous
            if not self.transport.is_closing():
                self.transport.write(data)
                if close:
                    self.transport.close()
        finally:
            if api:
                stats["pending"] -= 1
            if self.previous is asyncio.current_task():
                self.previous = None


async def main(port: int, delay_ms: float) -> None:
    global released
    released = asyncio.Event()
    released.set()
    settings["delay_ms"] = delay_ms
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Responder, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="WeChat code2Session stand-in (benchmarks)")
    parser.add_argument("port", type=int)
    parser.add_argument("--delay", type=float, default=0.0, metavar="MS",
                        help="milliseconds before each code2Session answer (default 0)")
    options = parser.parse_args()
    asyncio.run(main(options.port, options.delay))

"""A fast stand-in for WeChat's code2Session, for benchmarks only (asyncio, no framework).

``GET /sns/jscode2session?…&js_code=<openid>.<anything>`` answers like WeChat (text/plain
JSON, no errcode) with that openid and a session_key derived from it, so a benchmark can
pre-compute encryptedData. ``GET /stats`` → ``{"connections", "requests"}``.

    python bench/standin.py PORT
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import sys
from urllib.parse import parse_qs, urlsplit

stats = {"connections": 0, "requests": 0}


def openid_for(code: str) -> str:
    """The openid a code logs in as: the code up to its first dot."""
    return code.split(".", 1)[0] or "o-empty"


def session_key_for(openid: str) -> str:
    return base64.b64encode(hashlib.sha256(openid.encode()).digest()[:16]).decode()


def answer(target: str) -> tuple[str, bytes]:
    url = urlsplit(target)
    if url.path == "/stats":
        return "application/json", json.dumps(stats).encode()
    openid = openid_for(parse_qs(url.query).get("js_code", [""])[0])
    body = {"session_key": session_key_for(openid), "openid": openid}
    return "text/plain", json.dumps(body).encode()


class Responder(asyncio.Protocol):
    def connection_made(self, transport):
        stats["connections"] += 1
        self.transport = transport
        self.buffer = b""

    def data_received(self, data):
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            target = request_line.split(" ")[1] if " " in request_line else "/"
            stats["requests"] += 1
            content_type, body = answer(target)
            close = b"connection: close" in head.lower()
            self.transport.write(
                f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n"
                f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n".encode() + body)
            if close:
                self.transport.close()
                return


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Responder, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))

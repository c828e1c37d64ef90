"""A small real HTTP/1.1 app for the proxy tests, on Python's own http.server (threaded, keep-alive)."""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: AppServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(
        self, status: int, body: bytes, content_type: str = "application/json", extra: Sequence[str] = ()
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for header in extra:  # "name: value"
            name, _, value = header.partition(":")
            self.send_header(name.strip(), value.strip())
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        with self.server.lock:
            self.server.requests.append((self.command, self.path, dict(self.headers.items())))
            self.server.client_ports.add(self.client_address[1])
        if url.path == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            self._websocket_echo()
            return
        body = self._read_body()
        if url.path == "/gate":
            # Held until the test opens the gate of that name: a request in flight for as long as a test needs.
            entered, gate = self.server.gate(query["name"])
            entered.set()
            gate.wait(timeout=60)
        if url.path == "/slow":
            time.sleep(float(query.get("s", "1")))
        if url.path == "/status":
            # /status?code=403&h=x-mesh-error:denied: that status, with each ``h`` as a response header.
            self._send(int(query["code"]), b'{"app": "error"}', extra=parse_qs(url.query).get("h", []))
            return
        if url.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (b"alpha-", b"beta-", b"gamma"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        if url.path == "/big":
            size = int(query["bytes"])
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            block = b"x" * 65536
            remaining = size
            while remaining:
                piece = block[: min(remaining, len(block))]
                self.wfile.write(piece)
                remaining -= len(piece)
            return
        reply = {
            "name": self.server.name,
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body_length": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
        }
        self._send(200, json.dumps(reply).encode())

    def _websocket_echo(self) -> None:
        key = self.headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())  # noqa: S324 - RFC 6455
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept.decode())
        self.end_headers()
        self.wfile.flush()
        # Not a WebSocket implementation: echo raw bytes, which is all a tunnel test needs.
        while data := self.rfile.read1(65536):
            self.wfile.write(data)
            self.wfile.flush()
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _handle  # noqa: N815


class AppServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.name = name
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.client_ports: set[int] = set()
        self._gates: dict[str, tuple[threading.Event, threading.Event]] = {}

    def gate(self, name: str) -> tuple[threading.Event, threading.Event]:
        """(entered, open) of the gate ``name``: a request to /gate?name=<name> sets the first and waits for the
        second."""
        with self.lock:
            return self._gates.setdefault(name, (threading.Event(), threading.Event()))

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Tests cut connections on purpose (timeouts, clients leaving mid-response): not the app's fault.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


@contextmanager
def running_app(name: str) -> Iterator[AppServer]:
    server = AppServer(name)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

"""The demo's sample service: plain HTTP, no mesh code.

It calls the services it depends on through its sidecar's outbound port with
the service name in the ``Host`` header, exactly as any app in the mesh would,
passes the W3C trace context on, and now and then fails or is slow so the
dashboard has something to show.

    python -m meshui.launcher.sample_app --name reviews --port 9080 \\
        --calls ratings --outbound 127.0.0.1:15001 --error-rate 0.05 --slow-rate 0.1
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_TRACE_HEADERS = ("traceparent", "tracestate")


class SampleService:
    def __init__(self, name: str, calls: list[str], outbound: str, error_rate: float, slow_rate: float) -> None:
        self.name = name
        self.calls = calls
        self.outbound_host, port = outbound.rsplit(":", 1)
        self.outbound_port = int(port)
        self.error_rate = error_rate
        self.slow_rate = slow_rate
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.outbound_host, self.outbound_port, timeout=10)
            self._local.conn = conn
        return conn

    def call(self, service: str, trace_headers: dict[str, str]) -> dict[str, object]:
        conn = self._connection()
        try:
            conn.request("GET", "/", headers={"Host": service, **trace_headers})
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            self._local.conn = None
            return {"service": service, "error": str(exc)}
        return {"service": service, "status": response.status, "bytes": len(body)}

    def handle(self, trace_headers: dict[str, str]) -> tuple[int, dict[str, object]]:
        if random.random() < self.slow_rate:  # noqa: S311 - demo noise
            time.sleep(random.uniform(0.2, 0.8))  # noqa: S311
        downstream = [self.call(service, trace_headers) for service in self.calls]
        if random.random() < self.error_rate:  # noqa: S311
            return 500, {"service": self.name, "error": "injected failure", "calls": downstream}
        return 200, {"service": self.name, "calls": downstream}


def serve(service: SampleService, port: int) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            # The one thing a mesh asks of an app: pass the W3C trace context on to the calls a request makes,
            # so the sidecars' spans of every hop join one trace.
            trace_headers = {name: value for name in _TRACE_HEADERS if (value := self.headers.get(name))}
            status, body = service.handle(trace_headers)
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description="A sample service for the meshui demo.")
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--calls", default="", help="comma-separated services to call on each request")
    parser.add_argument("--outbound", default="127.0.0.1:15001", help="the sidecar's outbound listener")
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--slow-rate", type=float, default=0.0)
    args = parser.parse_args()
    calls = [c for c in args.calls.split(",") if c]
    serve(SampleService(args.name, calls, args.outbound, args.error_rate, args.slow_rate), args.port)


if __name__ == "__main__":
    main()

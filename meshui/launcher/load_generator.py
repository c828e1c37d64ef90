"""Steady demo traffic into the front service, at a fixed rate, until stopped."""

from __future__ import annotations

import argparse
import http.client
import time


def main() -> None:
    parser = argparse.ArgumentParser(description="Send steady traffic to the demo's front service.")
    parser.add_argument("--target", required=True, help="host:port of the front service's sidecar (outbound)")
    parser.add_argument("--host-header", default="web", help="the service to call")
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second")
    args = parser.parse_args()
    host, port = args.target.rsplit(":", 1)
    interval = 1.0 / args.rate
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    next_at = time.monotonic()
    while True:
        try:
            conn.request("GET", "/", headers={"Host": args.host_header})
            conn.getresponse().read()
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))  # pacing to the configured rate


if __name__ == "__main__":
    main()

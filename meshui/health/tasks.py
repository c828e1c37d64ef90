from __future__ import annotations

import socket

from celery import shared_task


@shared_task(name="meshui.health.ping")
def ping(payload: str) -> dict[str, str]:
    """Echo, with the worker's host name: proves a worker is consuming from the broker."""
    return {"payload": payload, "worker": socket.gethostname()}

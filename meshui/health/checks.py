"""Dependency probes for /readyz."""

from __future__ import annotations

import logging

import redis
from django.conf import settings
from django.db import DatabaseError, connection

logger = logging.getLogger(__name__)
_PROBE_TIMEOUT_SECONDS = 1.0


def database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return bool(cursor.fetchone() == (1,))
    except DatabaseError as exc:
        logger.warning("readiness: database unreachable: %s", exc)
        return False


def redis_ok() -> bool:
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=_PROBE_TIMEOUT_SECONDS, socket_connect_timeout=_PROBE_TIMEOUT_SECONDS
    )
    try:
        return bool(client.ping())
    except redis.RedisError as exc:
        logger.warning("readiness: redis unreachable: %s", exc)
        return False
    finally:
        client.close()

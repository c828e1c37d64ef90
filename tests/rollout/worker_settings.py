"""Settings of the Celery workers the rollout tests run as processes of their own.

The test database (by name, from ``MESH_TEST_DATABASE_NAME``), and broker keys
under a prefix of the test's own (``MESH_TEST_BROKER_PREFIX``), so a worker
restoring unacknowledged messages restores only the test's, never those of
another suite sharing the Redis. ``MESH_TEST_VISIBILITY_TIMEOUT`` is how long
a delivered, unacknowledged message waits before the worker hands it out
again; a worker that should pick up its killed predecessor's message sets it
low, and sweeps for such messages every second.
"""

import os

from meshui.settings import *  # noqa: F403
from meshui.settings import CELERY_BROKER_TRANSPORT_OPTIONS as _BASE_TRANSPORT_OPTIONS
from meshui.settings import DATABASES

DATABASES["default"]["NAME"] = os.environ["MESH_TEST_DATABASE_NAME"]
CELERY_BROKER_TRANSPORT_OPTIONS = {
    **_BASE_TRANSPORT_OPTIONS,
    "global_keyprefix": os.environ["MESH_TEST_BROKER_PREFIX"],
    "visibility_timeout": int(os.environ.get("MESH_TEST_VISIBILITY_TIMEOUT", "3600")),
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}

"""A task goes out through the real Redis broker, a real worker runs it, the result comes back."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings

from meshui.celery import MeshTask, app
from meshui.health.tasks import ping


@pytest.fixture
def worker() -> Iterator[Any]:
    app.control.purge()  # tasks queued by earlier tests are not this test's business
    # The worker thread needs no database: the ping task touches none.
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10, loglevel="WARNING") as running:
        yield running


def test_a_task_round_trips_through_redis(worker: Any) -> None:
    assert app.conf.broker_url == settings.REDIS_URL
    assert app.conf.broker_url.startswith("redis://")
    result = ping.delay("hello")
    assert result.get(timeout=20) == {"payload": "hello", "worker": result.get()["worker"]}
    assert result.successful()


def test_tasks_run_with_the_mesh_base_class(worker: Any, caplog: pytest.LogCaptureFixture) -> None:
    assert isinstance(ping, MeshTask)
    assert ping.max_retries == 5
    with caplog.at_level(logging.INFO, logger="meshui.tasks"):
        ping.delay("logged").get(timeout=20)
        # Celery stores the result before it runs the task's success handler, which logs: the result can be
        # back before the line is written, so wait for the line (with a deadline), not just for the result.
        deadline = time.monotonic() + 20
        while True:
            messages = [record.getMessage() for record in caplog.records if record.name == "meshui.tasks"]
            if any("meshui.health.ping" in m and "succeeded in" in m for m in messages):
                break
            assert time.monotonic() < deadline, messages
            time.sleep(0.01)


def test_time_limits_come_from_settings() -> None:
    assert app.conf.task_soft_time_limit == settings.CELERY_TASK_SOFT_TIME_LIMIT
    assert app.conf.task_time_limit > app.conf.task_soft_time_limit

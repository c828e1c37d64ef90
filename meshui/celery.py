"""The Celery application and the base class every meshui task runs with."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Celery, Task
from django.db import OperationalError
from kombu.exceptions import OperationalError as BrokerError

logger = logging.getLogger("meshui.tasks")


class MeshTask(Task):
    """Owns what every task needs: logging with timings, time limits, and retries of transient failures.

    Only failures that a later attempt can fix are retried (a database or the
    broker briefly unreachable); a bug fails once, loudly, with its traceback in
    the worker log. Time limits come from ``CELERY_TASK_SOFT_TIME_LIMIT`` and
    ``CELERY_TASK_TIME_LIMIT`` unless a task sets its own.
    """

    abstract = True
    autoretry_for = (OperationalError, BrokerError, ConnectionError, TimeoutError)
    retry_backoff = 2
    retry_backoff_max = 60
    retry_jitter = True
    max_retries = 5

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        self.request.mesh_started = time.monotonic()
        logger.info("task %s[%s] started", self.name, task_id)

    def _elapsed_ms(self) -> float:
        started = getattr(self.request, "mesh_started", None)
        return (time.monotonic() - started) * 1000 if started is not None else -1.0

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        logger.info("task %s[%s] succeeded in %.1f ms", self.name, task_id, self._elapsed_ms())

    def on_retry(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        logger.warning("task %s[%s] will retry after %s: %s", self.name, task_id, type(exc).__name__, exc)

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        logger.error("task %s[%s] failed after %.1f ms: %s", self.name, task_id, self._elapsed_ms(), exc, exc_info=exc)


def create_app() -> Celery:
    celery_app = Celery("meshui", task_cls=MeshTask)
    celery_app.config_from_object("django.conf:settings", namespace="CELERY")
    celery_app.autodiscover_tasks()
    return celery_app


app = create_app()
